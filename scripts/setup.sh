#!/usr/bin/env bash
# Installs what certwright's build and tests need on a Debian machine, if missing:
# OpenSSL, a Java 17 JDK (keytool, and javac for single-file Java programs), HAProxy
# (the local runtime's edge) and curl.
# Idempotent; safe to run on every invocation.
set -euo pipefail

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if ! command -v keytool >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
  need+=(openjdk-17-jdk-headless)
fi
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
# The local runtime's edge (Route manifests) runs HAProxy, as OpenShift's router does;
# the demo and the tests talk to it with curl.
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust (rustup) first" >&2
  exit 1
fi
