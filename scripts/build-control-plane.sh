#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from their Go modules (testenv/) into a
# cache outside the repo, keyed by the module files' hash, and prints the bin dir.
# A warm cache makes this a no-op; a cold one takes many minutes on 2 cores.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/testenv"
key=$(cat go.mod go.sum cmd/*/main.go | sha256sum | cut -c1-16)
version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' go.mod)
bin="${KE_CACHE_DIR:-$HOME/.cache/kube-endpoints}/control-plane-${version}-${key}"
tools=(kube-apiserver etcd kubectl kube-controller-manager)
missing=()
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  mkdir -p "$bin"
  for t in "${missing[@]}"; do
    echo "building $t ($version) into $bin" >&2
    start=$(date +%s)
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$bin/$t.tmp" "./cmd/$t"
    mv "$bin/$t.tmp" "$bin/$t"
    echo "built $t in $(( $(date +%s) - start ))s" >&2
  done
fi
echo "$bin"
