#!/usr/bin/env bash
# Rollout benchmark of the operator on a real control plane: its RSS on an empty cluster
# and with 10,000 unrelated Secrets and 2,000 unrelated Deployments; then 1,000
# Certificates, each followed by a Deployment, renewed at once: time until all are rolled
# out, the busiest minute against the rate limit, one new ReplicaSet each. Figures are
# printed; bench/README.md records them.
#
#   bash bench/rollouts.sh
#   N=500 RATE=300 UNRELATED=0 UNRELATED_DEPLOYMENTS=0 bash bench/rollouts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
CERTWRIGHT_KUBE_BIN_DIR="$(bash scripts/kube-bin.sh)"
export CERTWRIGHT_KUBE_BIN_DIR
SCENARIO=rollouts cargo bench --locked -p certwright-cli --bench operator_scale
