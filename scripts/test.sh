#!/usr/bin/env bash
# Every test of certwright: installs what is missing, checks formatting and lints, runs
# unit, interop (Java, OpenSSL) and end-to-end tests, then prints one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A real Kubernetes control plane for the operator tests (built once, then cached).
CERTWRIGHT_KUBE_BIN_DIR="$(bash scripts/kube-bin.sh)"
export CERTWRIGHT_KUBE_BIN_DIR
# Pebble and pebble-challtestsrv for the ACME tests (built once, then cached).
CERTWRIGHT_PEBBLE_DIR="$(bash scripts/pebble-bin.sh)"
export CERTWRIGHT_PEBBLE_DIR
# BIND and moto's server for DNS-01 (installed once).
CERTWRIGHT_MOTO_SERVER="$(bash scripts/dns-bin.sh)"
export CERTWRIGHT_MOTO_SERVER
# Helm, to render the chart in deploy/helm (built once, then cached).
CERTWRIGHT_HELM="$(bash scripts/helm-bin.sh)"
export CERTWRIGHT_HELM
# cert-manager's CLI, cmctl, for the compatibility checks (built once, then cached).
CERTWRIGHT_CMCTL="$(bash scripts/cmctl-bin.sh)"
export CERTWRIGHT_CMCTL
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# --no-fail-fast: every test binary runs even when an earlier one fails.
cargo test --workspace --all-targets --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^passed/) s += $(i-1) } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^failed/) s += $(i-1) } END { print s + 0 }' "$log")
if [ "$status" -ne 0 ]; then
  echo "failing tests:"
  grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^test /  /; s/ \.\.\. FAILED$//' | sort -u || true
  grep -E '^error: .*(failed|test failed)' "$log" | sed 's/^/  /' || true
  # A binary that crashed before its summary still counts as a failure.
  [ "$failed" -gt 0 ] || failed=1
fi
echo "tests: $passed passed, $failed failed"
exit "$status"
