#!/usr/bin/env bash
# ACME benchmark: certificates from one Pebble (v2.10.3, the tests' build) over HTTP-01,
# by certwright (the local runtime, every order at once), lego v4.34.0 and certbot (one
# after the other, as they are used: one command per certificate). Prints seconds per
# certificate and in total for each, then certwright with 100 certificates.
#
#   bash bench/acme.sh            # N=20 certificates each
#   N=50 SLEEPS=1 bash bench/acme.sh   # with Pebble's random validation sleeps (0-5 s)
#
# Builds what is missing: Pebble (scripts/pebble-bin.sh), lego through a throw-away Go
# module (the proxy refuses lego's version list, so `go install ...@v4.34.0` fails),
# certbot from Debian, certwright in release mode. Not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
LEGO_VERSION=v4.34.0
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/certwright-ci/target}"

pebble_dir=$(bash scripts/pebble-bin.sh)
lego_dir=/var/tmp/certwright-lego/$LEGO_VERSION
if [ ! -x "$lego_dir/lego" ]; then
  echo "bench: building lego $LEGO_VERSION" >&2
  export GOPATH="${GOPATH:-/var/tmp/certwright-go}" GOCACHE="${GOCACHE:-/var/tmp/certwright-go/cache}" GOFLAGS=-mod=mod
  mod=$(mktemp -d)
  printf 'module certwright.test/lego\n\ngo 1.22\n' > "$mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/go-acme/lego/v4/cmd/lego"\n' > "$mod/tools.go"
  (cd "$mod" && go get "github.com/go-acme/lego/v4@$LEGO_VERSION" >&2 && mkdir -p "$lego_dir" && go build -trimpath -o "$lego_dir/lego" github.com/go-acme/lego/v4/cmd/lego >&2)
  rm -rf "$mod"
fi
if ! command -v certbot >/dev/null 2>&1; then
  echo "bench: installing certbot" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends certbot >/dev/null
fi
cargo build --release -q -p certwright-cli
certwright="$CARGO_TARGET_DIR/release/certwright"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dns_port=$(free_port); listen=$(free_port); mgmt=$(free_port); http=$(free_port)
"$pebble_dir/pebble-challtestsrv" -dnsserver "127.0.0.1:$dns_port" -http01 "" -https01 "" -tlsalpn01 "" -doh "" \
  -management "127.0.0.1:$(free_port)" -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$work/chall.log" 2>&1 &
pids+=($!)
cat > "$work/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$listen", "managementListenAddress": "127.0.0.1:$mgmt",
 "certificate": "$pebble_dir/certs/localhost/cert.pem", "privateKey": "$pebble_dir/certs/localhost/key.pem",
 "httpPort": $http, "tlsPort": $(free_port), "ocspResponderURL": "", "externalAccountBindingRequired": false,
 "retryAfter": {"authz": 1, "order": 1}}}
JSON
if [ "${SLEEPS:-0}" = 1 ]; then sleeps="Pebble's validation sleeps on"; else sleeps="PEBBLE_VA_NOSLEEP=1"; export PEBBLE_VA_NOSLEEP=1; fi
"$pebble_dir/pebble" -config "$work/pebble.json" -dnsserver "127.0.0.1:$dns_port" >"$work/pebble.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$listen") 2>/dev/null && break; sleep 0.1; done
server="https://127.0.0.1:$listen/dir"
root="$pebble_dir/certs/pebble.minica.pem"
now() { date +%s.%N; }

manifest() { # count prefix
  cat <<YAML
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: pebble}
spec:
  acme:
    server: $server
    caBundle: $(base64 -w0 "$root")
    privateKeySecretRef: {name: pebble-account}
    solvers: [{http01: {ingress: {}}}]
YAML
  for i in $(seq "$1"); do
    printf -- '---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: %s%d, namespace: bench}\nspec:\n  secretName: %s%d\n  issuerRef: {name: pebble, kind: ClusterIssuer}\n  dnsNames: [%s%d.example.test]\n' "$2" "$i" "$2" "$i" "$2" "$i"
  done
}

run_certwright() { # count prefix -> seconds
  manifest "$1" "$2" > "$work/$2.yaml"
  local t0; t0=$(now)
  "$certwright" local run --once --no-fsync --timeout 10m -f "$work/$2.yaml" --state "$work/state-$2" \
    --acme-http01-address "127.0.0.1:$http" --acme-max-orders-per-hour 1000 --log-level warn >"$work/$2.log" 2>&1 \
    || { echo "certwright failed:" >&2; tail -20 "$work/$2.log" >&2; exit 1; }
  echo "$(now) - $t0" | bc
}

cw=$(run_certwright "$N" cw)

t0=$(now)
for i in $(seq "$N"); do
  LEGO_CA_CERTIFICATES="$root" "$lego_dir/lego" --server "$server" --email bench@example.test --accept-tos \
    --http --http.port "127.0.0.1:$http" --domains "lego$i.example.test" --path "$work/lego" run >"$work/lego.log" 2>&1 \
    || { echo "lego failed:" >&2; tail -20 "$work/lego.log" >&2; exit 1; }
done
lego=$(echo "$(now) - $t0" | bc)

t0=$(now)
for i in $(seq "$N"); do
  REQUESTS_CA_BUNDLE="$root" certbot certonly --standalone --non-interactive --agree-tos \
    --register-unsafely-without-email --server "$server" --http-01-address 127.0.0.1 --http-01-port "$http" \
    --config-dir "$work/certbot" --work-dir "$work/certbot" --logs-dir "$work/certbot" \
    -d "certbot$i.example.test" >"$work/certbot.log" 2>&1 \
    || { echo "certbot failed:" >&2; tail -20 "$work/certbot.log" >&2; exit 1; }
done
certbot_s=$(echo "$(now) - $t0" | bc)

cw100=$(run_certwright 100 hundred)

echo
echo "ACME, HTTP-01, one Pebble $sleeps, $(nproc) cores; certwright $(git rev-parse --short HEAD)"
printf '%-34s %8s %14s\n' "client" "total s" "s/certificate"
printf '%-34s %8.2f %14.3f\n' "certwright ($N at once)" "$cw" "$(echo "$cw / $N" | bc -l)"
printf '%-34s %8.2f %14.3f\n' "lego $LEGO_VERSION ($N in a row)" "$lego" "$(echo "$lego / $N" | bc -l)"
printf '%-34s %8.2f %14.3f\n' "certbot $(certbot --version 2>&1 | awk '{print $2}') ($N in a row)" "$certbot_s" "$(echo "$certbot_s / $N" | bc -l)"
printf '%-34s %8.2f %14.3f\n' "certwright (100 at once)" "$cw100" "$(echo "$cw100 / 100" | bc -l)"
printf 'certbot / certwright per certificate: %.1fx\n' "$(echo "$certbot_s / $cw" | bc -l)"
