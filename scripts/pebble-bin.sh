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
  echo "pebble-bin: building pebble $version" >&2
  # shellcheck source=lib/go-tool.sh
  . "$(dirname "$0")/lib/go-tool.sh"
  go_tool_build "$out" github.com/letsencrypt/pebble/v2 "$version" \
    github.com/letsencrypt/pebble/v2/cmd/pebble github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv
  rm -rf "$out/certs"
  cp -r "$GO_TOOL_SRC/test/certs" "$out/certs"
  chmod -R u+w "$out/certs"
fi
echo "$out"
