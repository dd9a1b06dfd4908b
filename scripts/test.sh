#!/usr/bin/env bash
# The project's test command: formatting, lints, unit tests and the
# end-to-end suite against a real kube-apiserver + etcd (built from their Go
# modules into ~/.cache on first use). Needs root for the network-namespace
# test hosts. Usage: scripts/test.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

scripts/install-deps.sh

echo "== control plane binaries"
start=$(date +%s)
KE_CONTROL_PLANE_BIN=$(scripts/build-control-plane.sh)
export KE_CONTROL_PLANE_BIN
echo "control plane ready in $(( $(date +%s) - start ))s: $KE_CONTROL_PLANE_BIN"

echo "== helm (for the chart tests)"
start=$(date +%s)
KE_HELM_BIN=$(scripts/build-helm.sh)
export KE_HELM_BIN
echo "helm ready in $(( $(date +%s) - start ))s: $KE_HELM_BIN"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo deny (licenses, bans, sources; offline)"
cargo fetch --locked
cargo deny --frozen check --hide-inclusion-graph licenses bans sources

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test (unit + end-to-end)"
start=$(date +%s)
cargo test --workspace --locked --no-fail-fast
echo "tests took $(( $(date +%s) - start ))s"

echo "== bench smoke (asserts only that the harness produced its figures)"
start=$(date +%s)
cargo build --locked -p kube-endpoints -p kube-endpoints-bench -p kube-endpoints-testkit
smoke_out=$(mktemp -d)
KE_TESTBACKEND="$repo/target/debug/ke-testbackend" target/debug/kube-endpoints-bench \
  --profile smoke --controller-bin "$repo/target/debug/kube-endpoints" \
  --out-dir "$smoke_out" --markdown "$smoke_out/BENCHMARKS.md" --check
rm -rf "$smoke_out"
echo "bench smoke took $(( $(date +%s) - start ))s"
