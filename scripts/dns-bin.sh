#!/usr/bin/env bash
# Provides the DNS side of the ACME tests and prints where moto's server is:
# - BIND 9 (Debian bind9: named), authoritative for the test zone, TSIG-signed updates,
#   and dig (bind9-dnsutils) to look at what it serves;
# - moto's server (PyPI moto[server], pinned) for the Route 53 API, in a virtualenv cached
#   in /var/tmp/certwright-moto (CERTWRIGHT_MOTO_CACHE).
# Idempotent; installs only what is missing.
set -euo pipefail
moto_version=5.2.5
need=()
command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ] || need+=(bind9)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
# The tests give BIND a loopback address of its own (ip addr add ... dev lo).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
if ((${#need[@]})); then
  echo "dns-bin: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's package starts a named service where systemd runs; the tests start their own.
  $SUDO systemctl disable --now named >/dev/null 2>&1 || true
fi
venv="${CERTWRIGHT_MOTO_CACHE:-/var/tmp/certwright-moto}/$moto_version"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "dns-bin: installing moto[server] $moto_version" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "moto[server]==$moto_version" >&2
fi
echo "$venv/bin/moto_server"
