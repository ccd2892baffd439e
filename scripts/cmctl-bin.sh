#!/usr/bin/env bash
# Provides cert-manager's CLI, cmctl v2.5.0, for the compatibility tests and prints its
# path: built from the Go module proxy through a throw-away module (the proxy refuses
# cmctl's version list, so `go install ...@latest` is not used). A few minutes on two cores
# the first time, then cached.
#
# CERTWRIGHT_CMCTL_CACHE: where the build is cached (default /var/tmp/certwright-cmctl).
set -euo pipefail
version=v2.5.0
out="${CERTWRIGHT_CMCTL_CACHE:-/var/tmp/certwright-cmctl}/$version"
if [ ! -x "$out/cmctl" ]; then
  command -v go >/dev/null 2>&1 || { echo "cmctl-bin: Go is required to build cmctl" >&2; exit 1; }
  echo "cmctl-bin: building cmctl $version (first time: a few minutes)" >&2
  export GOPATH="${GOPATH:-/var/tmp/certwright-go}"
  export GOCACHE="${GOCACHE:-/var/tmp/certwright-go/cache}"
  export GOFLAGS=-mod=mod
  mod="$(mktemp -d)"
  trap 'rm -rf "$mod"' EXIT
  cat > "$mod/go.mod" <<GOMOD
module certwright.test/cmctl

go 1.26.0
GOMOD
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/cert-manager/cmctl/v2"
)
GO
  (
    cd "$mod"
    go get "github.com/cert-manager/cmctl/v2@$version" >&2
    mkdir -p "$out"
    go build -trimpath -o "$out/cmctl" github.com/cert-manager/cmctl/v2 >&2
  )
fi
echo "$out/cmctl"
