#!/usr/bin/env bash
# Provides Helm for the chart test (tests/helm_chart.rs) and prints its path: helm from
# PATH if there is one, else Helm v3.22.0 built from the Go module proxy (about two
# minutes on two cores the first time, then cached).
#
# CERTWRIGHT_HELM_CACHE: where the build is cached (default /var/tmp/certwright-helm).
set -euo pipefail
if command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi
version=v3.22.0
out="${CERTWRIGHT_HELM_CACHE:-/var/tmp/certwright-helm}/$version"
if [ ! -x "$out/helm" ]; then
  command -v go >/dev/null 2>&1 || { echo "helm-bin: Go is required to build Helm" >&2; exit 1; }
  echo "helm-bin: building helm $version (first time: a few minutes)" >&2
  mkdir -p "$out"
  export GOPATH="${GOPATH:-/var/tmp/certwright-go}"
  export GOCACHE="${GOCACHE:-/var/tmp/certwright-go/cache}"
  (cd / && GOBIN="$out" GOFLAGS= go install "helm.sh/helm/v3/cmd/helm@$version") >&2
fi
echo "$out/helm"
