#!/usr/bin/env bash
# Rotation under load, measured: the reference scenario (scripts/demo.sh: Pebble, the
# internal PKI, HAProxy from the Route manifests, the three services) under a fixed-rate
# load through the edge's re-encrypt route, first with no rotation (the baseline), then
# while every certificate of the scenario is renewed every INTERVAL seconds (the three
# service certificates and the route certificate from Pebble, with `certwright renew`;
# the root CA once, with a new key, which rotates every leaf under it).
#
#   bash bench/rotation.sh                        # 10 minutes of rotations, a 2-minute baseline
#   DURATION=60 BASELINE=30 bash bench/rotation.sh
#
# Reports, for both phases: requests, failed requests, p50/p99 latency (oha, with its
# coordinated-omission correction), half the load on kept-alive connections and half on
# a new connection per request. For every rotation: the delay from the Secret's `..data`
# swap to the new serial being presented by each hop (fresh handshakes every 10 ms) and
# by HAProxy (the route certificate, and preference's through the passthrough route).
#
# Then (EDGE_COMPARISON seconds, default 120, 0 to skip) the route certificate alone is
# renewed every 5 s under the same load twice, once with certwright's way of updating
# HAProxy (the runtime API) and once with a reload per change (the hidden flag
# --edge-reload-certificates), in fresh scenarios: what each drops.
#
# The load generator is oha 1.16.0 (crates.io), a benchmark-only peer: installed here
# into /var/tmp/certwright-oha when missing, never by .ci/run (the CI version of this run
# is tests/local_edge.rs, with certwright-demo's own load generator).
#
# Environment: DURATION (600), BASELINE (120), INTERVAL (10), RATE (100 requests/s in
# all), ROOT_AT (seconds into the rotation phase; default half of DURATION),
# CERTWRIGHT_BIN_DIR (prebuilt binaries; default a release build), OUT (results; default
# a new /tmp/certwright-rotation.* directory), OHA (an oha binary).
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-600}"
baseline="${BASELINE:-120}"
interval="${INTERVAL:-10}"
rate="${RATE:-100}"
root_at="${ROOT_AT:-$((duration / 2))}"
out="${OUT:-$(mktemp -d /tmp/certwright-rotation.XXXXXX)}"
mkdir -p "$out"

oha="${OHA:-$(command -v oha || echo /var/tmp/certwright-oha/bin/oha)}"
if [ ! -x "$oha" ]; then
  echo "rotation: installing oha 1.16.0 into /var/tmp/certwright-oha (a few minutes, once)" >&2
  CARGO_TARGET_DIR=/var/tmp/certwright-oha/target cargo install oha --version 1.16.0 --locked --root /var/tmp/certwright-oha >&2
  oha=/var/tmp/certwright-oha/bin/oha
fi
if [ -z "${CERTWRIGHT_BIN_DIR:-}" ]; then
  cargo build --release --locked -p certwright-cli -p certwright-demo
  CERTWRIGHT_BIN_DIR="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)"
fi
export CERTWRIGHT_BIN_DIR
cw="$CERTWRIGHT_BIN_DIR/certwright"
svc="$CERTWRIGHT_BIN_DIR/certwright-demo"

demo=""
watcher=""
stop() {
  [ -n "$watcher" ] && kill "$watcher" 2>/dev/null || true
  watcher=""
  if [ -n "$demo" ]; then
    kill -TERM "$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
  fi
  demo=""
}
trap stop EXIT
# scenario DIR [FLAGS]: starts scripts/demo.sh with its state in DIR (more flags for
# `certwright local run` in FLAGS) and waits until it serves.
scenario() {
  state="$1"
  # certwright allows 6 ACME orders an hour per Certificate by default (a guard for real
  # CAs); renewing the route certificate every few seconds against Pebble needs more.
  STATE="$state" CERTWRIGHT_LOCAL_ARGS="--acme-max-orders-per-hour 100000 ${2:-}" bash scripts/demo.sh > "$state.log" 2>&1 &
  demo=$!
  for _ in $(seq 1 6000); do
    grep -q "^Try it" "$state.log" 2>/dev/null && return 0
    kill -0 "$demo" 2>/dev/null || { echo "rotation: the scenario did not start:" >&2; tail -30 "$state.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "rotation: the scenario did not start in 10 minutes" >&2
  exit 1
}
scenario "$out/state"

host=customer-demo.apps.example.com
port="${EDGE_PORT:-8443}"
ca="$state/demo/public-ca.pem"
# load NAME SECONDS: half the rate on kept-alive connections, half on new ones.
load() {
  local common=(-z "${2}s" -q "$((rate / 2))" -c 16 --latency-correction --no-tui --output-format json
    --cacert "$ca" --connect-to "$host:$port:127.0.0.1:$port" "https://$host:$port/")
  "$oha" "${common[@]}" > "$out/$1-keepalive.json" &
  local a=$!
  "$oha" "${common[@]}" --disable-keepalive > "$out/$1-new.json" &
  local b=$!
  wait "$a" "$b"
}

echo "rotation: baseline, ${baseline} s at $rate requests/s, no rotation"
load baseline "$baseline"

s="$state/secrets/demo"
"$svc" propagation \
  --watch "$s/service-customer=127.0.0.1:9441=customer.demo.svc" \
  --watch "$s/route-service-preference=127.0.0.1:9442=preference.demo.svc" \
  --watch "$s/route-service-preference=127.0.0.1:$port=preference-demo.apps.example.com" \
  --watch "$s/service-recommendation=127.0.0.1:9443=recommendation.demo.svc" \
  --watch "$s/route-customer=127.0.0.1:$port=$host" \
  > "$out/propagation.jsonl" 2> "$out/propagation.log" &
watcher=$!
sleep 1
echo "rotation: ${duration} s at $rate requests/s, every certificate renewed every $interval s, the root CA at $root_at s"
load rotation "$duration" &
loader=$!
start=$(date +%s)
round=0
root_done=0
while :; do
  round=$((round + 1))
  next=$((start + round * interval))
  [ "$next" -ge $((start + duration - interval)) ] && break
  wait_s=$((next - $(date +%s)))
  [ "$wait_s" -gt 0 ] && sleep "$wait_s"
  for c in customer preference recommendation route-customer; do
    "$cw" renew "$c" -n demo --state "$state" > /dev/null
  done
  if [ "$root_done" = 0 ] && [ $((next - start)) -ge "$root_at" ]; then
    "$cw" renew rootca -n cert-manager --state "$state" > /dev/null
    root_done=1
    echo "rotation: round $round: the root CA too"
  fi
done
wait "$loader"
sleep 2
kill "$watcher" 2>/dev/null || true
watcher=""
cp "$state/demo/logs/certwright.log" "$out/certwright.log"

# The route certificate alone, every 5 s: runtime API (certwright's way) against a
# HAProxy reload per change.
compare="${EDGE_COMPARISON:-120}"
if [ "$compare" -gt 0 ]; then
  for mode in api reload; do
    stop
    flags=""
    [ "$mode" = reload ] && flags="--edge-reload-certificates"
    scenario "$out/edge-$mode" "$flags"
    ca="$state/demo/public-ca.pem"
    echo "rotation: edge updates by $mode, ${compare} s, route certificate renewed every 5 s"
    load "edge-$mode" "$compare" &
    loader=$!
    t0=$(date +%s)
    while [ $(( $(date +%s) - t0 )) -lt $((compare - 5)) ]; do
      sleep 5
      "$cw" renew route-customer -n demo --state "$state" > /dev/null
    done
    wait "$loader"
    grep -c "edge configuration reloaded" "$state/demo/logs/certwright.log" > "$out/edge-$mode.reloads" || true
    grep -c "edge certificates updated in place" "$state/demo/logs/certwright.log" > "$out/edge-$mode.updates" || true
  done
fi
stop

python3 - "$out" "$round" "$compare" <<'EOF'
import json, sys, os
out, rounds, compare = sys.argv[1], int(sys.argv[2]) - 1, int(sys.argv[3])

def phase(name):
    total = failed = 0
    rows = []
    for kind in ("keepalive", "new"):
        d = json.load(open(os.path.join(out, f"{name}-{kind}.json")))
        codes = d.get("statusCodeDistribution", {})
        errors = {k: v for k, v in d.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
        n = sum(codes.values()) + sum(errors.values())
        bad = sum(v for k, v in codes.items() if k != "200") + sum(errors.values())
        total += n
        failed += bad
        p = d["latencyPercentiles"]
        rows.append(f"  {kind:<10} {n:>7} requests, {bad} failed, p50 {p['p50'] * 1000:.1f} ms, p99 {p['p99'] * 1000:.1f} ms"
                    + (f"  errors: {errors}" if errors else "") + (f"  statuses: {codes}" if set(codes) - {'200'} else ""))
    print(f"{name}: {total} requests, {failed} failed")
    print("\n".join(rows))
    return failed

phase("baseline")
failed = phase("rotation")
delays, timeouts, trust_only = {}, {}, 0
for line in open(os.path.join(out, "propagation.jsonl")):
    r = json.loads(line)
    if r.get("trust_only"):
        trust_only += 1
        continue
    e = r["endpoint"]
    if r.get("timeout"):
        timeouts[e] = timeouts.get(e, 0) + 1
    else:
        delays.setdefault(e, []).append(r["delay_ms"])
print(f"rotation rounds: {rounds}; ca.crt-only swaps (trust steps of the CA rotation): {trust_only}")
print("swap of ..data -> new serial presented (ms):")
names = {"9441": "customer hop", "9442": "preference hop", "9443": "recommendation hop"}
worst = 0
for e, v in sorted(delays.items()):
    v.sort()
    pct = lambda q: v[min(len(v) - 1, int(len(v) * q))]
    port = e.split("=")[0].rsplit(":", 1)[1]
    label = names.get(port, "HAProxy, " + e.split("=", 1)[1])
    worst = max(worst, pct(0.99))
    print(f"  {label:<50} n={len(v):>3}  p50 {pct(0.5):>4}  p99 {pct(0.99):>4}  max {v[-1]:>4}" + (f"  timeouts {timeouts.get(e, 0)}" if timeouts.get(e) else ""))
print(f"worst p99: {worst} ms (target 1000); failed requests during rotation: {failed} (target 0)")
if compare > 0:
    for mode in ("api", "reload"):
        read = lambda ext: open(os.path.join(out, f"edge-{mode}.{ext}")).read().strip() or "0"
        print(f"edge updates by {mode}: {read('updates')} in place, {read('reloads')} reloads")
        phase(f"edge-{mode}")
EOF
echo "rotation: results in $out"
