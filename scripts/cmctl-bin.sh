#!/usr/bin/env bash
# Provides cert-manager's CLI, cmctl v2.5.0, for the compatibility tests and prints its
# path: built from the Go module proxy (scripts/lib/go-tool.sh). A few minutes on two cores
# the first time, then cached.
#
# CERTWRIGHT_CMCTL_CACHE: where the build is cached (default /var/tmp/certwright-cmctl).
set -euo pipefail
version=v2.5.0
out="${CERTWRIGHT_CMCTL_CACHE:-/var/tmp/certwright-cmctl}/$version"
if [ ! -x "$out/cmctl" ]; then
  echo "cmctl-bin: building cmctl $version (first time: a few minutes)" >&2
  # shellcheck source=lib/go-tool.sh
  . "$(dirname "$0")/lib/go-tool.sh"
  go_tool_build "$out" github.com/cert-manager/cmctl/v2 "$version" github.com/cert-manager/cmctl/v2
fi
echo "$out/cmctl"
