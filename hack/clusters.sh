#!/usr/bin/env bash
# Local control planes for the demo and the e2e suite: upstream, downstream (authenticating through
# clustertrust) and an untrusted third cluster, each a real etcd + kube-apiserver on 127.0.0.1.
#
#   hack/clusters.sh up|down|env|status
#   hack/clusters.sh stop|start|rotate-key upstream
#
# Env: KUBEBUILDER_ASSETS (default: built by hack/build-control-plane.sh), WEBHOOK_CACHE_TTL (0s),
#      KEY_REFRESH_INTERVAL (10s), CLUSTERS_PORT_OFFSET (0), CLUSTERS_STATE_DIR (.clusters).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
if [[ "${1:-}" == "up" && -z "${KUBEBUILDER_ASSETS:-}" ]]; then
  KUBEBUILDER_ASSETS="$(hack/build-control-plane.sh)"
  export KUBEBUILDER_ASSETS
fi
mkdir -p bin
go build -o bin/devcluster ./hack/devcluster
exec bin/devcluster --state-dir "${CLUSTERS_STATE_DIR:-.clusters}" "$@"
