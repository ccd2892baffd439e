#!/usr/bin/env bash
# The main job: the reference scenario's internal PKI (examples/e2e) through the local
# runtime, then its status. Secrets land in ${STATE:-./state}/secrets/NAMESPACE/NAME/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p certwright-cli
bin="${CARGO_TARGET_DIR:-target}/release/certwright"
state="${STATE:-state}"
"$bin" local run -f examples/e2e --state "$state" --once
"$bin" status --state "$state"
