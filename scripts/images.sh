#!/usr/bin/env bash
# Builds the container images without a container daemon, with buildah (Debian package):
#
#   localhost/certwright:VERSION       the operator (and the local runtime), entrypoint
#                                      /usr/local/bin/certwright, command `operator`
#   localhost/certwright-demo:VERSION  the scenario's services, entrypoint
#                                      /usr/local/bin/certwright-demo
#
# Each image is built from scratch: the stripped binary, the shared libraries `ldd` names
# (glibc, libgcc_s) and the dynamic loader, the system CA bundle (ACME servers are reached
# over TLS), /etc/passwd and /etc/group with the non-root user 65532, and /tmp. Then each
# is smoke-run with `buildah run --isolation chroot` (`--version`, and `certwright crds`),
# its user, entrypoint and size are checked, and it is written as an OCI archive to
# ${OUT:-target/images}/NAME-VERSION.tar (load it with `podman load`, `ctr images import`
# or `skopeo copy oci-archive:...`). deploy/Dockerfile stays for those with a registry.
#
# Environment: CERTWRIGHT_BIN_DIR (use the binaries there instead of a release build),
# CERTWRIGHT_IMAGE_STORE (buildah's storage, default /var/tmp/certwright-images),
# MAX_IMAGE_MB (the size an image may not exceed, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v buildah >/dev/null 2>&1; then
  echo "images: installing buildah" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq buildah >/dev/null
fi
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
if [ -n "${CERTWRIGHT_BIN_DIR:-}" ]; then
  bin_dir="$CERTWRIGHT_BIN_DIR"
else
  cargo build --release --locked -p certwright-cli -p certwright-demo
  bin_dir="${CARGO_TARGET_DIR:-target}/release"
fi
store="${CERTWRIGHT_IMAGE_STORE:-/var/tmp/certwright-images}"
out="${OUT:-target/images}"
max_mb="${MAX_IMAGE_MB:-60}"
mkdir -p "$out"
b() { buildah --storage-driver vfs --root "$store/storage" --runroot "$store/run" "$@"; }

# build NAME CMD_JSON: builds localhost/NAME:$version from $bin_dir/NAME.
build() {
  local name="$1" cmd="$2" binary="$bin_dir/$1" ctr mnt lib
  [ -x "$binary" ] || { echo "images: $binary is missing" >&2; exit 1; }
  ctr="$(b from scratch)"
  mnt="$(b mount "$ctr")"
  install -d -m 0755 "$mnt/usr/local/bin" "$mnt/etc/ssl/certs"
  install -d -m 1777 "$mnt/tmp"
  objcopy --strip-debug "$binary" "$mnt/usr/local/bin/$name"
  chmod 0755 "$mnt/usr/local/bin/$name"
  # The shared libraries and the loader, at the paths the binary asks for.
  for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$mnt$lib"
  done
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$mnt/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$mnt/etc/group"
  b unmount "$ctr" >/dev/null
  b config --user 65532:65532 --workingdir /tmp \
    --entrypoint "[\"/usr/local/bin/$name\"]" --cmd "$cmd" \
    --label org.opencontainers.image.title="$name" \
    --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.source=https://github.com/certwright/certwright \
    "$ctr"
  b rmi -f "localhost/$name:$version" >/dev/null 2>&1 || true
  b commit --rm -q "$ctr" "localhost/$name:$version" >/dev/null
  echo "images: built localhost/$name:$version"
}

# check NAME EXPECTED_CMD: user, entrypoint, command and size of the image.
check() {
  local name="$1" want_cmd="$2" ref="localhost/$1:$version" facts user entry cmd mb
  facts="$(b inspect --type image "$ref" | python3 -c '
import json, sys
d = json.load(sys.stdin)
c = d["OCIv1"]["config"]
print(c.get("User", ""))
print(json.dumps(c.get("Entrypoint")))
print(json.dumps(c.get("Cmd")))
print(sum(l["size"] for l in json.loads(d["Manifest"])["layers"]) // 1048576)')"
  user="$(sed -n 1p <<<"$facts")" entry="$(sed -n 2p <<<"$facts")" cmd="$(sed -n 3p <<<"$facts")" mb="$(sed -n 4p <<<"$facts")"
  [ "$user" = "65532:65532" ] || { echo "images: $ref runs as $user, not 65532:65532" >&2; exit 1; }
  [ "$entry" = "[\"/usr/local/bin/$name\"]" ] || { echo "images: $ref entrypoint is $entry" >&2; exit 1; }
  [ "$cmd" = "$want_cmd" ] || { echo "images: $ref command is $cmd, not $want_cmd" >&2; exit 1; }
  [ "$mb" -gt 0 ] && [ "$mb" -le "$max_mb" ] || { echo "images: $ref is $mb MiB (limit $max_mb)" >&2; exit 1; }
  echo "images: $ref user $user, entrypoint $entry, command $cmd, $mb MiB"
}

# smoke NAME ARGS...: runs the image's binary inside it (chroot isolation, no daemon) and
# prints its output.
smoke() {
  local name="$1" ctr; shift
  ctr="$(b from -q "localhost/$name:$version")"
  b run --isolation chroot "$ctr" -- "/usr/local/bin/$name" "$@"
  b rm "$ctr" >/dev/null
}

build certwright '["operator"]'
build certwright-demo '[]'
check certwright '["operator"]'
check certwright-demo 'null'

got="$(smoke certwright --version)"
[ "$got" = "certwright $version" ] || { echo "images: certwright --version said: $got" >&2; exit 1; }
echo "images: certwright image runs: $got"
crds="$(smoke certwright crds)"
n="$(printf '%s\n' "$crds" | grep -c '^kind: CustomResourceDefinition' || true)"
[ "$n" -ge 6 ] || { echo "images: certwright crds printed $n CRDs" >&2; exit 1; }
echo "images: certwright crds inside the image: $n CustomResourceDefinitions"
got="$(smoke certwright-demo --version)"
[ "$got" = "certwright-demo $version" ] || { echo "images: certwright-demo --version said: $got" >&2; exit 1; }
echo "images: certwright-demo image runs: $got"

b rmi --prune >/dev/null 2>&1 || true
for name in certwright certwright-demo; do
  rm -f "$out/$name-$version.tar"
  b push -q "localhost/$name:$version" "oci-archive:$out/$name-$version.tar:localhost/$name:$version"
  echo "images: $out/$name-$version.tar ($(du -m "$out/$name-$version.tar" | cut -f1) MiB)"
done
