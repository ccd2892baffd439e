#!/usr/bin/env bash
# Provides the binaries of a real Kubernetes control plane for the operator tests and
# prints their directory: upstream kube-apiserver, kube-controller-manager and kubectl
# v1.36.3, built from the Go module proxy (controlplane/go.mod pins them; about 10 minutes
# on two cores the first time, then cached), and Debian's etcd.
#
# CERTWRIGHT_KUBE_BIN_DIR: use binaries already there instead (all four must exist).
# CERTWRIGHT_KUBE_CACHE:   where builds are cached (default /var/tmp/certwright-kube).
set -euo pipefail
cd "$(dirname "$0")/.."
version=v1.36.3
if [ -n "${CERTWRIGHT_KUBE_BIN_DIR:-}" ]; then
  for b in kube-apiserver kube-controller-manager kubectl etcd; do
    [ -x "$CERTWRIGHT_KUBE_BIN_DIR/$b" ] || { echo "kube-bin: $CERTWRIGHT_KUBE_BIN_DIR/$b is missing" >&2; exit 1; }
  done
  echo "$CERTWRIGHT_KUBE_BIN_DIR"
  exit 0
fi
out="${CERTWRIGHT_KUBE_CACHE:-/var/tmp/certwright-kube}/$version"
mkdir -p "$out"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
  echo "kube-bin: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package starts an etcd service where systemd runs; the tests start their own.
$SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
ln -sf "$(command -v etcd)" "$out/etcd"
if [ ! -x "$out/kube-apiserver" ] || [ ! -x "$out/kube-controller-manager" ] || [ ! -x "$out/kubectl" ]; then
  command -v go >/dev/null 2>&1 || { echo "kube-bin: Go is required to build the control plane" >&2; exit 1; }
  echo "kube-bin: building kube-apiserver, kube-controller-manager and kubectl $version (first time: several minutes)" >&2
  export GOPATH="${GOPATH:-/var/tmp/certwright-go}"
  export GOCACHE="${GOCACHE:-/var/tmp/certwright-go/cache}"
  export GOFLAGS=-mod=mod
  ldflags="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36"
  (cd controlplane && go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl) >&2
fi
echo "$out"
