#!/usr/bin/env bash
# Provides Pebble and pebble-challtestsrv (Let's Encrypt's ACME test server and its DNS /
# challenge helper) for the ACME tests, built from the Go module proxy, and prints the
# directory holding them. Also copied there: Pebble's test certificates (certs/), whose
# pebble.minica.pem is the root of Pebble's own HTTPS certificate. About ten seconds the
# first time, then cached.
#
# CERTWRIGHT_PEBBLE_CACHE: where the build is cached (default /var/tmp/certwright-pebble).
set -euo pipefail
version=v2.10.3
out="${CERTWRIGHT_PEBBLE_CACHE:-/var/tmp/certwright-pebble}/$version"
if [ ! -x "$out/pebble" ] || [ ! -x "$out/pebble-challtestsrv" ] || [ ! -f "$out/certs/pebble.minica.pem" ]; then
  command -v go >/dev/null 2>&1 || { echo "pebble-bin: Go is required to build Pebble" >&2; exit 1; }
  echo "pebble-bin: building pebble $version" >&2
  export GOPATH="${GOPATH:-/var/tmp/certwright-go}"
  export GOCACHE="${GOCACHE:-/var/tmp/certwright-go/cache}"
  export GOFLAGS=-mod=mod
  # A throw-away module pins the version (the proxy may refuse version lists, so
  # `go install ...@latest` is not used).
  mod="$(mktemp -d)"
  trap 'rm -rf "$mod"' EXIT
  cat > "$mod/go.mod" <<GOMOD
module certwright.test/pebble

go 1.22
GOMOD
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble"
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv"
)
GO
  (
    cd "$mod"
    go get "github.com/letsencrypt/pebble/v2@$version" >&2
    mkdir -p "$out"
    go build -trimpath -o "$out/" github.com/letsencrypt/pebble/v2/cmd/pebble github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv >&2
    src="$(go list -m -f '{{.Dir}}' "github.com/letsencrypt/pebble/v2")"
    rm -rf "$out/certs"
    cp -r "$src/test/certs" "$out/certs"
    chmod -R u+w "$out/certs"
  )
fi
echo "$out"
