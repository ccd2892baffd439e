#!/usr/bin/env bash
# The main job: the reference scenario end to end on this machine.
#
# certwright's local runtime issues the internal PKI (a self-signed root, the
# internal-issuer ClusterIssuer, the three service certificates) and the customer route's
# public certificate from an ACME server (Pebble, Let's Encrypt's test server, validating
# HTTP-01 against certwright), and serves the scenario's Routes with HAProxy, as
# OpenShift's router does. The three services (customer -> preference -> recommendation,
# demo/) serve HTTPS from their secret directories and call each other over HTTPS.
# The script prints the chain through the re-encrypt route and the passthrough route and
# `certwright status`, then keeps everything running until Ctrl-C.
#
#   bash scripts/demo.sh [--rotate SECONDS] [--no-acme] [--exit]
#
#   --rotate SECONDS  renew every certificate of the scenario every SECONDS while running,
#                     printing what each hop and the edge serve after each round
#   --no-acme         no Pebble: a second, self-signed CA stands in for Let's Encrypt
#   --exit            stop after printing (and after one rotation round with --rotate)
#
# Environment: STATE (default ./state), EDGE_PORT (8443), CERTWRIGHT_BIN_DIR (use the
# certwright and certwright-demo binaries there instead of building them),
# CERTWRIGHT_LOCAL_ARGS (more flags for `certwright local run`).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

rotate=0
acme=1
exit_after=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rotate) rotate="${2:?--rotate needs SECONDS}"; shift 2 ;;
    --no-acme) acme=0; shift ;;
    --exit) exit_after=1; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$rotate" in ''|*[!0-9]*) echo "demo: --rotate takes whole seconds" >&2; exit 2 ;; esac

bash scripts/setup.sh

if [ -n "${CERTWRIGHT_BIN_DIR:-}" ]; then
  bin_dir="$CERTWRIGHT_BIN_DIR"
else
  cargo build --release --locked -p certwright-cli -p certwright-demo
  bin_dir="${CARGO_TARGET_DIR:-target}/release"
fi
cw="$bin_dir/certwright"
svc="$bin_dir/certwright-demo"
[ -x "$cw" ] && [ -x "$svc" ] || { echo "demo: $cw or $svc is missing" >&2; exit 1; }

state="${STATE:-state}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
run="$state/demo"
logs="$run/logs"
manifests="$run/manifests"
rm -rf "$manifests"
mkdir -p "$logs" "$manifests"

edge_port="${EDGE_PORT:-8443}"
customer_port=9441 preference_port=9442 recommendation_port=9443
pebble_port=14000 pebble_mgmt=15000 http01_port=5002 dns_port=8053 chall_mgmt=8055
ports=("$edge_port" "$customer_port" "$preference_port" "$recommendation_port")
[ "$acme" = 1 ] && ports+=("$pebble_port" "$pebble_mgmt" "$http01_port" "$dns_port" "$chall_mgmt")
for p in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p on 127.0.0.1 is in use (another demo running?); stop it first" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - EXIT INT TERM HUP
  set +e
  echo
  echo "demo: stopping"
  # The services first, then the runtime (which stops HAProxy), then Pebble.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  echo "demo: stopped (logs in $logs)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
# A closed output (`| head`) makes writes fail, and the script stop through cleanup.
trap '' PIPE

cp deploy/demo/pki.yaml deploy/demo/certificates.yaml deploy/demo/routes.yaml "$manifests/"
runtime_args=()
if [ "$acme" = 1 ]; then
  pebble_dir="$(bash scripts/pebble-bin.sh)"
  # challtestsrv answers every name with 127.0.0.1: Pebble validates HTTP-01 against
  # certwright's listener on port $http01_port.
  "$pebble_dir/pebble-challtestsrv" -dnsserver "127.0.0.1:$dns_port" -management "127.0.0.1:$chall_mgmt" \
    -http01 "" -https01 "" -tlsalpn01 "" -doh "" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    > "$logs/challtestsrv.log" 2>&1 &
  pids+=($!)
  cat > "$run/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$pebble_port", "managementListenAddress": "127.0.0.1:$pebble_mgmt",
 "certificate": "$pebble_dir/certs/localhost/cert.pem", "privateKey": "$pebble_dir/certs/localhost/key.pem",
 "httpPort": $http01_port, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false,
 "retryAfter": {"authz": 1, "order": 1},
 "profiles": {"default": {"description": "90 days", "validityPeriod": 7776000}}}}
EOF
  PEBBLE_VA_NOSLEEP=1 "$pebble_dir/pebble" -config "$run/pebble.json" -dnsserver "127.0.0.1:$dns_port" > "$logs/pebble.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$pebble_port") 2>/dev/null && break; sleep 0.1; done
  bundle="$(base64 -w0 < "$pebble_dir/certs/pebble.minica.pem")"
  cat > "$manifests/letsencrypt.yaml" <<EOF
# The scenario's external PKI against a local ACME server: the customer route's public
# certificate from Pebble (standing in for Let's Encrypt), validated by HTTP-01.
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: letsencrypt
spec:
  acme:
    server: https://127.0.0.1:$pebble_port/dir
    email: ops@example.com
    caBundle: $bundle
    privateKeySecretRef:
      name: letsencrypt
    solvers:
      - http01:
          ingress: {}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: route-customer
  namespace: demo
spec:
  secretName: route-customer
  issuerRef:
    name: letsencrypt
    kind: ClusterIssuer
  commonName: customer-demo.apps.example.com
  dnsNames:
    - customer-demo.apps.example.com
  privateKey:
    encoding: PKCS8
EOF
  runtime_args+=(--acme-http01-address "127.0.0.1:$http01_port")
else
  cp demo/manifests/stand-in-public-ca.yaml "$manifests/"
  echo "========================================================================"
  echo " --no-acme: NO Let's Encrypt and no ACME server. A second, self-signed"
  echo " CA (demo/stand-in-public-ca) issues the customer route's public"
  echo " certificate instead. No browser trusts it; the demo's curl is told to."
  echo "========================================================================"
fi

"$cw" local run -f "$manifests" --state "$state" \
  --edge-listen "127.0.0.1:$edge_port" \
  --endpoint "demo/customer=127.0.0.1:$customer_port" \
  --endpoint "demo/preference=127.0.0.1:$preference_port" \
  "${runtime_args[@]}" ${CERTWRIGHT_LOCAL_ARGS:-} > "$logs/certwright.log" 2>&1 &
pids=($! "${pids[@]}")

secret() { echo "$state/secrets/demo/$1"; }
echo "demo: issuing the scenario's certificates (log: $logs/certwright.log)"
for _ in $(seq 1 1200); do
  ok=1
  for s in service-customer route-service-preference service-recommendation route-customer; do
    [ -e "$(secret "$s")/tls.crt" ] || ok=0
  done
  [ "$ok" = 1 ] && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "demo: certwright stopped:" >&2; tail -20 "$logs/certwright.log" >&2; exit 1; }
  sleep 0.1
done
[ "$ok" = 1 ] || { echo "demo: certificates not issued after 120 s:" >&2; tail -20 "$logs/certwright.log" >&2; exit 1; }

start_hop() {
  local name="$1" port="$2" dir="$3"; shift 3
  "$svc" serve --name "$name" --listen "127.0.0.1:$port" --secret-dir "$(secret "$dir")" "$@" > "$logs/$name.log" 2>&1 &
  pids=($! "${pids[@]}")
}
start_hop recommendation "$recommendation_port" service-recommendation
start_hop preference "$preference_port" route-service-preference \
  --upstream "https://127.0.0.1:$recommendation_port/" --upstream-name recommendation.demo.svc
start_hop customer "$customer_port" service-customer \
  --upstream "https://127.0.0.1:$preference_port/" --upstream-name preference.demo.svc

# What a browser trusts for the public route: Pebble's issuing root (or the stand-in CA).
public_ca="$run/public-ca.pem"
if [ "$acme" = 1 ]; then
  curl -sS --cacert "$pebble_dir/certs/pebble.minica.pem" "https://127.0.0.1:$pebble_mgmt/roots/0" > "$public_ca"
else
  cp "$(secret stand-in-public-ca)/ca.crt" "$public_ca"
fi
internal_ca="$run/internal-ca.pem"
cp "$(secret route-service-preference)/ca.crt" "$internal_ca"

through() { # host ca [path]: curl through the edge
  curl -sS --max-time 10 --cacert "$2" --resolve "$1:$edge_port:127.0.0.1" "https://$1:$edge_port${3:-/}"
}
# Wait for the edge and customer (its /healthz does not go down the chain, so the first
# request below is recommendation's first).
for _ in $(seq 1 300); do
  through customer-demo.apps.example.com "$public_ca" /healthz >/dev/null 2>&1 && break
  sleep 0.1
done

echo
echo "== re-encrypt route: curl https://customer-demo.apps.example.com:$edge_port/ (through HAProxy)"
through customer-demo.apps.example.com "$public_ca"
echo "== passthrough route: curl https://preference-demo.apps.example.com:$edge_port/ (through HAProxy)"
through preference-demo.apps.example.com "$internal_ca"
echo "== certwright status --state $state"
"$cw" status --state "$state" || true
echo
echo "Try it (until Ctrl-C):"
echo "  curl --cacert $public_ca --resolve customer-demo.apps.example.com:$edge_port:127.0.0.1 https://customer-demo.apps.example.com:$edge_port/"
echo "  curl --cacert $internal_ca --resolve preference-demo.apps.example.com:$edge_port:127.0.0.1 https://preference-demo.apps.example.com:$edge_port/"
echo "  $cw renew customer -n demo --state $state     # the customer hop serves the new certificate within a second"

serial() { openssl x509 -noout -serial -in "$1" | sed 's/serial=//'; }
served() { "$svc" probe --connect "127.0.0.1:$1" --server-name "$2" | awk '{print toupper($2)}'; }
round=0
if [ "$rotate" -gt 0 ]; then
  echo
  echo "Renewing every certificate of the scenario every $rotate s:"
fi
while :; do
  if [ "$rotate" -gt 0 ]; then
    sleep "$rotate" &
    wait $!
    round=$((round + 1))
    for c in customer preference recommendation route-customer; do
      "$cw" renew "$c" -n demo --state "$state" > /dev/null
    done
    sleep 2
    line="round $round:"
    for h in "customer $customer_port service-customer customer.demo.svc" \
             "preference $preference_port route-service-preference preference.demo.svc" \
             "recommendation $recommendation_port service-recommendation recommendation.demo.svc"; do
      set -- $h
      want="$(serial "$(secret "$3")/tls.crt" | sed 's/^0*//')"
      got="$(served "$2" "$4" | sed 's/^0*//')"
      [ "$want" = "$got" ] && line="$line $1 serves $got;" || line="$line $1 serves $got (secret has $want);"
    done
    want="$(serial "$(secret route-customer)/tls.crt" | sed 's/^0*//')"
    got="$(served "$edge_port" customer-demo.apps.example.com | sed 's/^0*//')"
    [ "$want" = "$got" ] && line="$line edge serves $got" || line="$line edge serves $got (secret has $want)"
    echo "$line"
    echo "  $(through customer-demo.apps.example.com "$public_ca" 2>&1)"
    [ "$exit_after" = 1 ] && break
  else
    [ "$exit_after" = 1 ] && break
    # In the background, so that a signal to this script is handled at once.
    sleep 3600 &
    wait $!
  fi
done
