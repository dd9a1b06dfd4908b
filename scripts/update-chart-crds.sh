#!/usr/bin/env bash
# Regenerates the chart's copies of the ClusterEndpoint CRDs
# (charts/kube-endpoints/files/crds/<group>.yaml) from the Rust types, via
# `kube-endpoints crd --group G`. Run it after changing crates/api; the chart
# test (crates/controller/tests/chart_render.rs) fails while the copies are stale.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
dir=charts/kube-endpoints/files/crds
mkdir -p "$dir"
for group in khulnasoft-lab.github.io sealos.io sealyun.com; do
  cargo run -q -p kube-endpoints -- crd --group "$group" > "$dir/$group.yaml.tmp"
  mv "$dir/$group.yaml.tmp" "$dir/$group.yaml"
  echo "wrote $dir/$group.yaml"
done
