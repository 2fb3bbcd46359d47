#!/usr/bin/env bash
# Runs the two-cluster e2e suite against local control planes: brings them up (on ports offset by
# CLUSTERS_PORT_OFFSET, default 1000, so a `make demo` left running does not collide), runs
# test/e2e, and always brings them down again, even when a test fails or the run is interrupted.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"

export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$(hack/build-control-plane.sh)}"
export CLUSTERS_PORT_OFFSET="${CLUSTERS_PORT_OFFSET:-1000}"
export CLUSTERS_STATE_DIR="${CLUSTERS_STATE_DIR:-${root}/.clusters-e2e}"
export WEBHOOK_CACHE_TTL="${WEBHOOK_CACHE_TTL:-0s}"
export KEY_REFRESH_INTERVAL="${KEY_REFRESH_INTERVAL:-10s}"

mkdir -p bin
go build -o bin/webhook ./cmd/webhook
export WEBHOOK_BIN="${root}/bin/webhook"
trap 'hack/clusters.sh down >/dev/null 2>&1 || true' EXIT
hack/clusters.sh down >/dev/null 2>&1 || true
hack/clusters.sh up
eval "$(hack/clusters.sh env)"
export CLUSTERS_CMD="${root}/hack/clusters.sh"
set +e
go test -tags e2e -count=1 -timeout 20m -v ./test/e2e/... "$@"
rc=$?
set -e
if [[ ${rc} -ne 0 ]]; then
  echo "--- last lines of the clustertrust log:"
  tail -n 40 "${CLUSTERS_STATE_DIR}/clustertrust.log" || true
fi
exit ${rc}
