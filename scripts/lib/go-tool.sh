# Sourced by the *-bin.sh scripts: builds Go tools at a pinned version from the Go module
# proxy through a throw-away module. The proxy may refuse a module's version list, so
# `go install ...@version` is not relied on.
#
#   go_tool_build OUT_DIR MODULE VERSION PACKAGE...
#
# builds each PACKAGE (of MODULE at VERSION) into OUT_DIR, and leaves the module's source
# directory in GO_TOOL_SRC for files a caller copies from it.
go_tool_build() {
  local out="$1" module="$2" version="$3"
  shift 3
  command -v go >/dev/null 2>&1 || { echo "go-tool: Go is required to build $module" >&2; return 1; }
  export GOPATH="${GOPATH:-/var/tmp/certwright-go}"
  export GOCACHE="${GOCACHE:-/var/tmp/certwright-go/cache}"
  export GOFLAGS=-mod=mod
  local mod
  mod="$(mktemp -d)"
  {
    echo "module certwright.test/tools"
    echo
    echo "go 1.22"
  } > "$mod/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for p in "$@"; do echo "	_ \"$p\""; done
    echo ")"
  } > "$mod/tools.go"
  (
    cd "$mod"
    go get "$module@$version" >&2
    mkdir -p "$out"
    go build -trimpath -o "$out/" "$@" >&2
  ) || { rm -rf "$mod"; return 1; }
  GO_TOOL_SRC="$(cd "$mod" && go list -m -f '{{.Dir}}' "$module")"
  rm -rf "$mod"
}
