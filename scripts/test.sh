#!/usr/bin/env bash
# Every test of certwright: installs what is missing, checks formatting and lints, runs
# unit, interop (Java, OpenSSL) and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
