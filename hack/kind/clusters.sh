#!/usr/bin/env bash
# The kind flavour of hack/clusters.sh, for machines with Docker: the same verbs, so test/e2e runs
# unchanged against three kind clusters.
#
#   hack/kind/clusters.sh up|down|env
#   hack/kind/clusters.sh stop|start|rotate-key upstream
#
# Needs docker, kind and kubectl on PATH. Not exercised in CI (there is no Docker engine there); the
# local control planes of hack/clusters.sh are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="${root}/hack/kind"
state="${root}/.clusters-kind"
image="${CLUSTERTRUST_IMAGE:-clustertrust:dev}"

need() { command -v "$1" >/dev/null || { echo "hack/kind/clusters.sh: $1 is required" >&2; exit 1; }; }
kc() { echo "${state}/$1.kubeconfig"; }

up() {
  need docker; need kind; need kubectl
  mkdir -p "${state}/webhook"
  go run ./hack/devcluster certs "${state}/webhook"   # CA + serving cert for 127.0.0.1, and webhook.kubeconfig
  for name in upstream third; do
    kind create cluster --config "${here}/${name}.yaml" --kubeconfig "$(kc "${name}")"
    kubectl --kubeconfig "$(kc "${name}")" create clusterrolebinding clustertrust-public-issuer-discovery \
      --clusterrole=system:service-account-issuer-discovery --group=system:unauthenticated
  done
  sed "s|WEBHOOK_DIR|${state}/webhook|" "${here}/downstream.yaml" >"${state}/downstream.yaml"
  kind create cluster --config "${state}/downstream.yaml" --kubeconfig "$(kc downstream)"
  docker build -t "${image}" "${root}"
  kind load docker-image "${image}" --name ct-downstream
  kubectl --kubeconfig "$(kc downstream)" apply -k "${root}/config/crd"
  kubectl --kubeconfig "$(kc downstream)" apply -f "${here}/webhook.yaml"
  kubectl --kubeconfig "$(kc downstream)" apply -k "${root}/config/rbac"
  kubectl --kubeconfig "$(kc downstream)" -n clustertrust-system create secret tls clustertrust-serving-cert \
    --cert "${state}/webhook/webhook.crt" --key "${state}/webhook/webhook.key"
  kubectl --kubeconfig "$(kc downstream)" -n clustertrust-system set image deployment/clustertrust webhook="${image}"
  kubectl --kubeconfig "$(kc downstream)" -n clustertrust-system rollout status deployment/clustertrust --timeout=180s
}

case "${1:-}" in
  up) up ;;
  down)
    for name in upstream downstream third; do kind delete cluster --name "ct-${name}" || true; done
    rm -rf "${state}" ;;
  env)
    for name in upstream downstream third; do echo "export ${name^^}_KUBECONFIG=$(kc "${name}")"; done
    echo "export WEBHOOK_URL=https://127.0.0.1:19443/authenticate"
    echo "export WEBHOOK_CA_FILE=${state}/webhook/webhook-ca.crt"
    echo "export WEBHOOK_METRICS_URL=http://127.0.0.1:19080/metrics" ;;
  stop) docker stop "ct-${2:?cluster}-control-plane" ;;
  start)
    docker start "ct-${2:?cluster}-control-plane"
    until kubectl --kubeconfig "$(kc "$2")" get --raw /readyz >/dev/null 2>&1; do sleep 1; done ;;
  rotate-key)
    node="ct-${2:?cluster}-control-plane"
    # Sign with a new key while still accepting (and publishing) the old one, as in a real rotation.
    docker exec "${node}" sh -ec '
      cd /etc/kubernetes/pki
      openssl genrsa -out sa-new.key 2048 2>/dev/null && openssl rsa -in sa-new.key -pubout -out sa-new.pub 2>/dev/null
      m=/etc/kubernetes/manifests/kube-apiserver.yaml
      sed -i "s|--service-account-signing-key-file=.*|--service-account-signing-key-file=/etc/kubernetes/pki/sa-new.key|" $m
      sed -i "s|    - --service-account-key-file=/etc/kubernetes/pki/sa.pub|&\n    - --service-account-key-file=/etc/kubernetes/pki/sa-new.pub|" $m'
    sleep 5
    until kubectl --kubeconfig "$(kc "$2")" get --raw /readyz >/dev/null 2>&1; do sleep 1; done ;;
  *) echo "usage: hack/kind/clusters.sh up|down|env|stop CLUSTER|start CLUSTER|rotate-key CLUSTER" >&2; exit 2 ;;
esac
