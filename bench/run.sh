#!/usr/bin/env bash
# Benchmark: N ECDSA P-256 certificates (default 1000) signed by a CA, each with PEM, JKS
# and PKCS#12 outputs, through `certwright local run --once`; then the same work done by a
# shell loop of openssl + keytool, as a user would script it (PEER_N certificates,
# default 20, extrapolated). Prints certificates per second, peak RSS, and the ratio.
#
#   bash bench/run.sh                  # 1000 certificates, Modern2023 PKCS#12
#   N=1000 PROFILE=LegacyRC2 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000}"
PEER_N="${PEER_N:-20}"
PROFILE="${PROFILE:-Modern2023}"
bash scripts/setup.sh
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --locked -p certwright-cli >&2
bin="${CARGO_TARGET_DIR:-target}/release/certwright"
work="$(mktemp -d)"
# State directories are removed at exit only: mass deletions slow ext4's next inode
# allocations for minutes (see bench/README.md), which would skew a later run.
cleanup=("$work")
trap 'rm -rf "${cleanup[@]}"' EXIT

# --- certwright ---------------------------------------------------------------------
mkdir -p "$work/m"
{
  cat <<YAML
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self, namespace: bench}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: ca, namespace: bench}
spec:
  secretName: ca
  issuerRef: {name: self}
  commonName: bench-ca
  isCA: true
  privateKey: {algorithm: ECDSA}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: ca, namespace: bench}
spec: {ca: {secretName: ca}}
YAML
  for i in $(seq 1 "$N"); do
    cat <<YAML
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: svc-$i, namespace: bench}
spec:
  secretName: svc-$i
  issuerRef: {name: ca}
  commonName: svc-$i.bench.svc
  dnsNames: [svc-$i, svc-$i.bench.svc]
  privateKey: {algorithm: ECDSA, size: 256}
  keystores:
    jks: {create: true, password: changeme}
    pkcs12: {create: true, password: changeme, profile: $PROFILE}
YAML
  done
} > "$work/m/certs.yaml"

# One run on the machine's disk (the default TMPDIR) and one on tmpfs (/dev/shm): the
# difference is the file system's cost per inode. Each run then reruns with nothing to do.
run_cw() { # STATE_PARENT LABEL
  local st="$1/cw-bench-state.$$"
  rm -rf "$st"
  cleanup+=("$st")
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin" local run -f "$work/m" --state "$st" --once --log-level warn
  read -r secs rss_kb < "$work/time"
  local ready files inodes
  ready=$("$bin" status --state "$st" | awk '$3 == "True"' | wc -l)
  files=$(ls -1 "$st/secrets/bench"/*/keystore.p12 | wc -l)
  inodes=$(find "$st" | wc -l)
  /usr/bin/time -f "%e %M" -o "$work/time2" "$bin" local run -f "$work/m" --state "$st" --once --log-level warn
  read -r re_secs re_rss_kb < "$work/time2"
  local fstype
  fstype=$(df -T "$1" | awk 'NR == 2 { print $2 }')
  echo "certwright, state on $2 ($fstype): $N certificates (+ CA) with PEM, JKS and PKCS#12 outputs: ${secs} s, $(awk -v n="$N" -v s="$secs" 'BEGIN { printf "%.0f", (n + 1) / s }') certificates/s, peak RSS $(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }') MiB, ${ready} Ready, ${files} keystore.p12 files, $(awk -v i="$inodes" -v n="$N" 'BEGIN { printf "%.1f", i / (n + 1) }') inodes per certificate; rerun with nothing to change: ${re_secs} s" >> "$work/results"
  CW_RATE=$(awk -v n="$N" -v s="$secs" 'BEGIN { printf "%.0f", (n + 1) / s }')
}
: > "$work/results"
run_cw "${TMPDIR:-/tmp}" disk
cw_rate="$CW_RATE"
if [ -d /dev/shm ]; then run_cw /dev/shm tmpfs; fi

# --- openssl + keytool loop -----------------------------------------------------------
p="$work/peer"
mkdir -p "$p"
openssl ecparam -name prime256v1 -genkey -noout -out "$p/ca.key" 2>/dev/null
openssl req -x509 -new -key "$p/ca.key" -subj /CN=bench-ca -days 90 -out "$p/ca.crt" 2>/dev/null
start=$(date +%s.%N)
for i in $(seq 1 "$PEER_N"); do
  d="$p/svc-$i"; mkdir -p "$d"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/tls.key" 2>/dev/null
  openssl req -new -key "$d/tls.key" -subj "/CN=svc-$i.bench.svc" \
    -addext "subjectAltName=DNS:svc-$i,DNS:svc-$i.bench.svc" -out "$d/req.csr" 2>/dev/null
  openssl x509 -req -in "$d/req.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 90 -copy_extensions copy -out "$d/tls.crt" 2>/dev/null
  cp "$p/ca.crt" "$d/ca.crt"
  openssl pkcs12 -export -in "$d/tls.crt" -inkey "$d/tls.key" -certfile "$p/ca.crt" \
    -name certificate -passout pass:changeme -out "$d/keystore.p12"
  openssl pkcs12 -export -nokeys -in "$p/ca.crt" -passout pass:changeme -out "$d/truststore.p12"
  keytool -importkeystore -noprompt -srckeystore "$d/keystore.p12" -srcstoretype PKCS12 \
    -srcstorepass changeme -destkeystore "$d/keystore.jks" -deststoretype JKS \
    -deststorepass changeme >/dev/null 2>&1
  keytool -importcert -noprompt -alias ca -file "$p/ca.crt" -keystore "$d/truststore.jks" \
    -storetype JKS -storepass changeme >/dev/null 2>&1
done
end=$(date +%s.%N)
peer_secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
peer_rate=$(awk -v n="$PEER_N" -v s="$peer_secs" 'BEGIN { printf "%.2f", n / s }')
ratio=$(awk -v a="$cw_rate" -v b="$peer_rate" 'BEGIN { printf "%.0f", a / b }')

cat <<OUT
machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); PKCS#12 profile $PROFILE
$(cat "$work/results")
openssl+keytool loop: $PEER_N certificates in ${peer_secs} s, ${peer_rate} certificates/s
speed-up (disk): ${ratio}x
OUT
