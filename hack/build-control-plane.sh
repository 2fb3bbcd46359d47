#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from source through the Go module proxy into
# bin/k8s/<kubernetes-version>/, the directory envtest and the local clusters use as
# KUBEBUILDER_ASSETS. Prebuilt downloads are not an option where only the module proxy is
# reachable, so the binaries are compiled from the released modules instead.
#
# Usage: hack/build-control-plane.sh            # prints the assets directory on stdout
# Env:   KUBERNETES_VERSION (default 1.37.2), ETCD_VERSION (default 3.7.3)
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${root}/bin/k8s/${KUBERNETES_VERSION}"
log() { echo "build-control-plane: $*" >&2; }

if [[ -x "${out}/kube-apiserver" && -x "${out}/etcd" && -x "${out}/kubectl" ]]; then
  echo "${out}"
  exit 0
fi
command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
mkdir -p "${out}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

# kubernetes' own go.mod points every k8s.io staging module at ./staging; outside that tree each
# one must be replaced by its published v0.<minor>.<patch> tag. Read the list from the released
# go.mod so a new staging module never needs a script change.
log "reading k8s.io/kubernetes@v${KUBERNETES_VERSION} go.mod"
gomod="$(cd "${work}" && go mod download -json "k8s.io/kubernetes@v${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
[[ -f "${gomod}" ]] || { log "could not download k8s.io/kubernetes@v${KUBERNETES_VERSION}"; exit 1; }
staging_version="v0.${KUBERNETES_VERSION#*.}"
goversion="$(sed -n 's/^go \(.*\)/\1/p' "${gomod}")"

mkdir -p "${work}/k8s" "${work}/etcd"
{
  echo "module clustertrust.local/control-plane"
  echo "go ${goversion}"
  echo "require k8s.io/kubernetes v${KUBERNETES_VERSION}"
  grep -oE 'k8s\.io/[a-z0-9-]+ => \./staging' "${gomod}" | awk -v v="${staging_version}" '{print "replace " $1 " => " $1 " " v}'
} >"${work}/k8s/go.mod"
cat >"${work}/k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
log "resolving kubernetes modules ($(grep -c '^replace' "${work}/k8s/go.mod") staging replaces)"
(cd "${work}/k8s" && go mod tidy -e >/dev/null 2>&1 || true; go mod download 2>&1 | tail -5 >&2)

# etcd's server module has relative replaces of its own, so it too goes through a wrapper module.
cat >"${work}/etcd/go.mod" <<GOMOD
module clustertrust.local/etcd
go ${goversion}
require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
GOMOD
cat >"${work}/etcd/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
(cd "${work}/etcd" && go mod tidy -e >/dev/null 2>&1 || true)

log "building etcd v${ETCD_VERSION}"
(cd "${work}/etcd" && CGO_ENABLED=0 go build -trimpath -o "${out}/etcd.tmp" go.etcd.io/etcd/server/v3)
mv "${out}/etcd.tmp" "${out}/etcd"

# The kube-apiserver build takes several minutes on two cores the first time; print a heartbeat
# so a person (or CI log) can tell a slow build from a hung one.
log "building kube-apiserver and kubectl v${KUBERNETES_VERSION} (first build: about 8-10 minutes on 2 cores)"
( while sleep 30; do log "... still compiling ($(date +%T))"; done ) &
ticker=$!
trap 'kill ${ticker} 2>/dev/null || true; rm -rf "${work}"' EXIT
minor="${KUBERNETES_VERSION#*.}"
minor="${minor%%.*}"
ldflags="-X k8s.io/component-base/version.gitVersion=v${KUBERNETES_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
(cd "${work}/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${out}/.build/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
mv "${out}/.build/kube-apiserver" "${out}/.build/kubectl" "${out}/"
rmdir "${out}/.build"
log "done: ${out}"
echo "${out}"
