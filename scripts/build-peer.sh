#!/usr/bin/env bash
# Builds the predecessor, labring/endpoints-operator, from a checkout of its
# source (the first argument) with Go, into a cache outside the repo, and
# prints the binary's path. For `make bench-peer` only: the predecessor is
# measured side by side, never linked or vendored.
#
# The build is keyed by the Go version and the checkout's go.mod, go.sum and
# Go sources, so a second run is a no-op. Its modules come through the Go
# module proxy like the control plane's.
set -euo pipefail
src=${1:?usage: scripts/build-peer.sh DIR (a checkout of labring/endpoints-operator)}
src=$(cd "$src" && pwd)
[ -f "$src/go.mod" ] && grep -q '^module github.com/labring/endpoints-operator' "$src/go.mod" || {
  echo "$src is not a checkout of labring/endpoints-operator (no such module in go.mod)" >&2
  exit 2
}
cache="${KE_CACHE_DIR:-$HOME/.cache/kube-endpoints}"
key=$({
  go env GOVERSION
  cd "$src" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -c1-16)
dir="$cache/endpoints-operator-$key"
if [ ! -x "$dir/endpoints-operator" ]; then
  mkdir -p "$dir"
  echo "building endpoints-operator from $src into $dir" >&2
  start=$(date +%s)
  # The checkout may be read-only: build from it, write only the binary.
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$dir/endpoints-operator.tmp" ./cmd/endpoints-operator)
  mv "$dir/endpoints-operator.tmp" "$dir/endpoints-operator"
  echo "built endpoints-operator in $(( $(date +%s) - start ))s" >&2
fi
echo "$dir/endpoints-operator"
