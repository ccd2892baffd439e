#!/usr/bin/env bash
# Scale benchmark of the operator on a real control plane: 1,000 Certificates (CA issuer,
# ECDSA) from creation to all Ready, with the operator's RSS; then again with 10,000
# unrelated Secrets present. Figures are printed; bench/README.md records them.
#
#   bash bench/operator.sh
#   N=2000 UNRELATED=20000 bash bench/operator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CERTWRIGHT_KUBE_BIN_DIR="$(bash scripts/kube-bin.sh)"
export CERTWRIGHT_KUBE_BIN_DIR
cargo bench --locked -p certwright-cli --bench operator_scale
