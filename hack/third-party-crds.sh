#!/usr/bin/env bash
# Copies the CRDs of cert-manager and the Prometheus Operator from their Go modules (the module proxy is
# the only registry here) into bin/crds/, so the chart's optional objects (Certificate, Issuer,
# ServiceMonitor, PrometheusRule) can be validated by a real kube-apiserver in a server-side dry run.
#
# Usage: hack/third-party-crds.sh     # prints the directory on stdout
# Env:   CERT_MANAGER_VERSION (default v1.19.1), PROMETHEUS_OPERATOR_VERSION (default v0.85.0)
set -euo pipefail
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${root}/bin/crds/cert-manager-${CERT_MANAGER_VERSION}_prometheus-operator-${PROMETHEUS_OPERATOR_VERSION}"
if [[ -f "${out}/.done" ]]; then
  echo "${out}"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
moddir() { (cd "${work}" && go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); }
cm="$(moddir "github.com/cert-manager/cert-manager@${CERT_MANAGER_VERSION}")"
po="$(moddir "github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION}")"
[[ -d "${cm}/deploy/crds" && -d "${po}/example/prometheus-operator-crd" ]] || { echo "third-party-crds: could not download the modules" >&2; exit 1; }
mkdir -p "${out}"
cp "${cm}"/deploy/crds/cert-manager.io_{certificates,issuers,clusterissuers}.yaml "${out}/"
cp "${po}"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "${out}/"
chmod u+w "${out}"/*.yaml
touch "${out}/.done"
echo "${out}"
