#!/usr/bin/env bash
# Runs test/e2e against three kind clusters (needs Docker): the path for users who have it. Brings them
# up, runs the suite and always brings them down again; on failure prints clustertrust's last log lines.
# TestTrustApply runs `webhook trust` on the host, which cannot resolve the upstream's issuer host (a
# kind node name): trust picks static keys there, so the suite is told to expect that mode.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${root}"
trap 'hack/kind/clusters.sh down >/dev/null 2>&1 || true' EXIT
hack/kind/clusters.sh down >/dev/null 2>&1 || true
hack/kind/clusters.sh up
eval "$(hack/kind/clusters.sh env)"
export CLUSTERS_CMD="${root}/hack/kind/clusters.sh"
export E2E_TRUST_MODE=static
mkdir -p bin && go build -o bin/webhook ./cmd/webhook
export WEBHOOK_BIN="${root}/bin/webhook"
set +e
go test -tags e2e -count=1 -timeout 30m -v ./test/e2e/... "$@"
rc=$?
set -e
if [[ ${rc} -ne 0 ]]; then
  echo "--- last lines of the clustertrust log:"
  kubectl --kubeconfig "${DOWNSTREAM_KUBECONFIG}" -n clustertrust-system logs deployment/clustertrust --tail 40 || true
fi
exit ${rc}
