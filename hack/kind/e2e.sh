#!/usr/bin/env bash
# Runs test/e2e against three kind clusters (needs Docker): the path for users who have it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${root}"
trap 'hack/kind/clusters.sh down >/dev/null 2>&1 || true' EXIT
hack/kind/clusters.sh up
eval "$(hack/kind/clusters.sh env)"
export CLUSTERS_CMD="${root}/hack/kind/clusters.sh"
mkdir -p bin && go build -o bin/webhook ./cmd/webhook
export WEBHOOK_BIN="${root}/bin/webhook"
go test -tags e2e -count=1 -timeout 30m -v ./test/e2e/... "$@"
