#!/usr/bin/env bash
# Builds the real helm CLI (helm.sh/helm/v3/cmd/helm, pinned by testenv/helm's
# go.mod through a `tool` directive) into a cache outside the repo, keyed by
# the module files' hash, and prints the binary's path. Used by the chart
# tests (crates/controller/tests/chart_render.rs, chart_cluster.rs) as
# KE_HELM_BIN. testenv/helm is a module of its own so that bumping helm
# never invalidates the (much slower) cached control-plane build keyed by
# testenv/go.mod.
# A warm cache makes this a no-op; a cold build takes a few minutes on 2 cores.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/testenv/helm"
# The key covers this script too: its ldflags change the binary.
key=$(cat go.mod go.sum "$repo/scripts/build-helm.sh" | sha256sum | cut -c1-16)
version=$(awk '$1=="helm.sh/helm/v3"{print $2; exit}' go.mod)
[ -n "$version" ] || { echo "helm.sh/helm/v3 is not required in testenv/helm/go.mod" >&2; exit 1; }
# The Kubernetes version `helm template`/`helm lint` assume (.Capabilities
# and the chart's kubeVersion check): that of the client-go helm is built
# with, as upstream's Makefile sets it (else helm claims Kubernetes 1.20).
k8s_minor=$(awk '$1=="k8s.io/client-go"{split($2, v, "."); print v[2]; exit}' go.mod)
[ -n "$k8s_minor" ] || { echo "k8s.io/client-go is not in testenv/helm/go.mod" >&2; exit 1; }
dir="${KE_CACHE_DIR:-$HOME/.cache/kube-endpoints}/helm-${version}-${key}"
# Serialise concurrent callers (several test binaries may ask at once).
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ ! -x "$dir/helm" ]; then
  echo "building helm ($version) into $dir" >&2
  start=$(date +%s)
  # The -X flags are those of upstream's Makefile: the version `helm
  # version` prints and the Kubernetes version helm renders for.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${version}"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${k8s_minor}"
  done
  CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" \
    -o "$dir/helm.tmp" helm.sh/helm/v3/cmd/helm
  mv "$dir/helm.tmp" "$dir/helm"
  echo "built helm in $(( $(date +%s) - start ))s" >&2
fi
echo "$dir/helm"
