#!/usr/bin/env bash
# Builds kube-apiserver, etcd, kubectl, kube-controller-manager and kube-proxy
# from their Go modules (testenv/) into a cache outside the repo and prints a
# bin dir holding all of them.
#
# Each tool is cached on its own, keyed by what it is built from: its
# cmd/<tool>/main.go, the Go version and the exact module versions (with
# their checksums) of the packages it imports (`go list -deps`). Adding a tool
# or a module that another tool does not use therefore rebuilds nothing else.
# The bin dir printed is a set of symlinks to those per-tool builds. The Go
# build cache (GOCACHE) is shared by all tools, so a tool built after the
# others compiles only its own packages (kube-proxy: about a minute).
# A warm cache makes this a no-op apart from `go list` (a second or two); a
# cold one takes many minutes on 2 cores.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/testenv"
version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' go.mod)
cache="${KE_CACHE_DIR:-$HOME/.cache/kube-endpoints}"
tools=(kube-apiserver etcd kubectl kube-controller-manager kube-proxy)
go_version=$(go env GOVERSION)

tool_key() {
  local t=$1
  {
    echo "$go_version"
    cat "cmd/$t/main.go"
    go list -deps -f '{{with .Module}}{{.Path}} {{.Version}} {{.Sum}}{{with .Replace}} => {{.Path}} {{.Version}} {{.Sum}}{{end}}{{end}}' "./cmd/$t" | sort -u
  } | sha256sum | cut -c1-16
}

links=()
for t in "${tools[@]}"; do
  dir="$cache/tools/$t-$version-$(tool_key "$t")"
  if [ ! -x "$dir/$t" ]; then
    mkdir -p "$dir"
    echo "building $t ($version) into $dir" >&2
    start=$(date +%s)
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dir/$t.tmp" "./cmd/$t"
    mv "$dir/$t.tmp" "$dir/$t"
    echo "built $t in $(( $(date +%s) - start ))s" >&2
  fi
  links+=("$dir/$t")
done
key=$(printf '%s\n' "${links[@]}" | sha256sum | cut -c1-16)
bin="$cache/control-plane-$version-$key"
if [ ! -d "$bin" ]; then
  mkdir -p "$bin.tmp.$$"
  for l in "${links[@]}"; do ln -sf "$l" "$bin.tmp.$$/"; done
  mv -T "$bin.tmp.$$" "$bin" 2>/dev/null || rm -rf "$bin.tmp.$$"
fi
echo "$bin"
