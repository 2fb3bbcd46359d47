#!/usr/bin/env bash
# The kind flavour of hack/clusters.sh, for machines with Docker: the same verbs, so test/e2e runs
# unchanged against three kind clusters.
#
#   hack/kind/clusters.sh up|down|env
#   hack/kind/clusters.sh stop|start|rotate-key upstream
#
# Needs docker, kind, kubectl and go on PATH; Helm is the repository's pinned build (`make helm`).
# Env: CLUSTERTRUST_IMAGE (clustertrust:dev), KIND_NODE_IMAGE (kind's default node image; the chart
# needs Kubernetes >= 1.34).
#
# NOT RUN: written where no Docker engine exists and checked only by reading it against kind's docs
# and source (kubeadmConfigPatches matched by apiVersion, kind #4173: kubeadm v1beta4 from Kubernetes
# 1.36; extraMounts, extraPortMappings, apiServerAddress/Port; nodes named <cluster>-control-plane on
# the `kind` network; kind load docker-image), the kubeadm v1beta3/v1beta4 references and
# kube-apiserver's flags; plus `bash -n` and `helm template -f values.yaml`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${root}"
here="${root}/hack/kind"
state="${root}/.clusters-kind"
image="${CLUSTERTRUST_IMAGE:-clustertrust:dev}"
# The Helm `make helm` builds: keep in step with HELM_VERSION in the Makefile.
helm="${root}/bin/helm-v3.22.0"
namespace=clustertrust-system

need() { command -v "$1" >/dev/null || { echo "hack/kind/clusters.sh: $1 is required" >&2; exit 1; }; }
fail() { echo "hack/kind/clusters.sh: $*" >&2; exit 1; }
kc() { echo "${state}/$1.kubeconfig"; }
node() { echo "ct-$1-control-plane"; }
# The ServiceAccount issuer upstream.yaml and third.yaml set: the node container on kind's network.
issuer() { echo "https://$(node "$1"):6443"; }

# waitready CLUSTER: until its kube-apiserver answers /readyz through the host's port mapping.
waitready() {
  local deadline=$((SECONDS + 180))
  until kubectl --kubeconfig "$(kc "$1")" get --raw /readyz >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$1 kube-apiserver not ready after 180s"
    sleep 1
  done
}

# jwkskeys CLUSTER: how many keys its kube-apiserver publishes (0 while it does not answer).
jwkskeys() {
  { kubectl --kubeconfig "$(kc "$1")" get --raw /openid/v1/jwks 2>/dev/null || true; } |
    { grep -o '"kid"' || true; } | wc -l
}

createcluster() { # NAME CONFIG
  kind create cluster --config "$2" --kubeconfig "$(kc "$1")" ${KIND_NODE_IMAGE:+--image "${KIND_NODE_IMAGE}"}
}

up() {
  need docker; need kind; need kubectl; need go
  [[ "${image##*/}" == *:* ]] || fail "CLUSTERTRUST_IMAGE=${image} needs a tag (repository:tag)"
  make -C "${root}" helm >/dev/null
  [[ -x "${helm}" ]] || fail "${helm} is missing: has HELM_VERSION in the Makefile moved on?"
  mkdir -p "${state}/webhook"
  # A CA, a serving certificate for 127.0.0.1 and webhook.kubeconfig for https://127.0.0.1:19443;
  # the offset is pinned because it shifts that port, and the kind ports are fixed.
  CLUSTERS_PORT_OFFSET=0 go run ./hack/devcluster certs "${state}/webhook"

  for name in upstream third; do
    createcluster "${name}" "${here}/${name}.yaml"
    # Discovery and JWKS readable without credentials, as on managed clusters.
    kubectl --kubeconfig "$(kc "${name}")" create clusterrolebinding clustertrust-public-issuer-discovery \
      --clusterrole=system:service-account-issuer-discovery --group=system:unauthenticated \
      --dry-run=client -o yaml | kubectl --kubeconfig "$(kc "${name}")" apply -f - >/dev/null
    # The issuer patch applies only to the kubeadm API version kind generated: check it landed.
    local doc want
    doc="$(kubectl --kubeconfig "$(kc "${name}")" get --raw /.well-known/openid-configuration)"
    want="$(issuer "${name}")"
    [[ "${doc}" == *"\"issuer\":\"${want}\""* && "${doc}" == *"\"jwks_uri\":\"${want}/openid/v1/jwks\""* ]] ||
      fail "${name}: the discovery document is not for ${want} (did the kubeadm patch apply?): ${doc}"
  done

  sed "s|WEBHOOK_DIR|${state}/webhook|" "${here}/downstream.yaml" >"${state}/downstream.yaml"
  createcluster downstream "${state}/downstream.yaml"
  docker exec "$(node downstream)" grep -q -- '--authentication-token-webhook-config-file=/etc/kubernetes/clustertrust/webhook.kubeconfig' \
    /etc/kubernetes/manifests/kube-apiserver.yaml ||
    fail "downstream kube-apiserver lacks the webhook flags (did the kubeadm patch apply?)"

  docker build -t "${image}" "${root}"
  kind load docker-image "${image}" --name ct-downstream
  # The serving certificate first: the chart mounts this Secret (tls.source=secret).
  kubectl --kubeconfig "$(kc downstream)" create namespace "${namespace}" --dry-run=client -o yaml |
    kubectl --kubeconfig "$(kc downstream)" apply -f - >/dev/null
  kubectl --kubeconfig "$(kc downstream)" -n "${namespace}" create secret tls clustertrust-serving-cert \
    --cert "${state}/webhook/webhook.crt" --key "${state}/webhook/webhook.key" --dry-run=client -o yaml |
    kubectl --kubeconfig "$(kc downstream)" apply -f - >/dev/null
  # The chart installs the CRD (crds/) as well; --wait returns once the pod is ready.
  "${helm}" upgrade --install clustertrust "${root}/charts/clustertrust" \
    --kubeconfig "$(kc downstream)" -n "${namespace}" --create-namespace \
    -f "${here}/values.yaml" --set-string image.repository="${image%:*}" --set-string image.tag="${image##*:}" \
    --wait --timeout 5m
}

# rotate-key CLUSTER: sign with a new key while still accepting (and publishing) every older one, as
# in a real rotation. kubeadm makes the key pair (in a new directory each time, so repeated rotations
# keep all keys); the kubelet restarts the static pod when its manifest changes.
rotatekey() {
  local before deadline
  before="$(jwkskeys "$1")"
  ((before > 0)) || fail "$1 kube-apiserver does not publish its keys"
  docker exec "$(node "$1")" sh -ec '
    pki=/etc/kubernetes/pki m=/etc/kubernetes/manifests/kube-apiserver.yaml
    n=1; while [ -e "$pki/clustertrust-sa-$n" ]; do n=$((n + 1)); done
    d="$pki/clustertrust-sa-$n"
    mkdir -p "$d"
    kubeadm init phase certs sa --cert-dir "$d" --kubernetes-version "$(kubeadm version -o short)" >/dev/null
    sed -i -e "s|--service-account-signing-key-file=.*|--service-account-signing-key-file=$d/sa.key|" \
      -e "s|^\( *\)- --service-account-key-file=$pki/sa\.pub\$|&\n\1- --service-account-key-file=$d/sa.pub|" "$m"
    grep -q -- "--service-account-signing-key-file=$d/sa.key" "$m"
    grep -q -- "--service-account-key-file=$d/sa.pub" "$m"'
  # Done once the restarted kube-apiserver publishes the new key next to the old ones: only then
  # does it sign with the new one.
  deadline=$((SECONDS + 180))
  until (($(jwkskeys "$1") > before)); do
    ((SECONDS < deadline)) || fail "$1 kube-apiserver did not pick up the new key within 180s"
    sleep 1
  done
  waitready "$1"
}

case "${1:-}" in
  up) up ;;
  down)
    for name in upstream downstream third; do
      kind delete cluster --name "ct-${name}" --kubeconfig "$(kc "${name}")" || true
    done
    rm -rf "${state}" ;;
  env)
    for name in upstream downstream third; do echo "export ${name^^}_KUBECONFIG=$(kc "${name}")"; done
    # 19443 and 19080 are mapped from the downstream node to the host's loopback (downstream.yaml).
    echo "export WEBHOOK_URL=https://127.0.0.1:19443/authenticate"
    echo "export WEBHOOK_CA_FILE=${state}/webhook/webhook-ca.crt"
    echo "export WEBHOOK_METRICS_URL=http://127.0.0.1:19080/metrics"
    # The file the downstream kube-apiserver calls clustertrust with (mounted into its node); the probe
    # port is not mapped to the host, so no WEBHOOK_READYZ_URL.
    echo "export WEBHOOK_KUBECONFIG=${state}/webhook/webhook.kubeconfig" ;;
  stop) docker stop "$(node "${2:?cluster}")" >/dev/null && echo "$2 stopped" ;;
  start)
    docker start "$(node "${2:?cluster}")" >/dev/null
    waitready "$2" && echo "$2 started" ;;
  rotate-key) rotatekey "${2:?cluster}" && echo "$2 now signs with a new key and still accepts the older ones" ;;
  apiserver-log)
    # kubeadm's static pod is named kube-apiserver-<node name>; the e2e suite reads refusals from it.
    kubectl --kubeconfig "$(kc "${2:?cluster}")" -n kube-system logs "kube-apiserver-$(node "$2")" ;;
  *) echo "usage: hack/kind/clusters.sh up|down|env|stop CLUSTER|start CLUSTER|rotate-key CLUSTER|apiserver-log CLUSTER" >&2; exit 2 ;;
esac
