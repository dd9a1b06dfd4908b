#!/usr/bin/env bash
# One-command demo on a fresh machine: builds what is missing (the
# control-plane binaries and kube-proxy from their Go modules, the
# controller), then brings up etcd + kube-apiserver, two network-namespace
# hosts with TCP/HTTP/UDP/gRPC backends and the controller; applies the
# wordpress example (examples/wordpress.yaml) pointed at those hosts, shows
# `kubectl get cep,svc,endpointslices`, starts a node namespace running
# kube-proxy and `curl`s the Service's ClusterIP from it (both hosts answer),
# stops one backend, shows the change and `curl` answered only by the other,
# brings it back, and cleans everything up. Needs root (network namespaces).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: needs root (network namespaces)" >&2
  exit 1
fi
scripts/install-deps.sh
KE_CONTROL_PLANE_BIN=$(scripts/build-control-plane.sh)
export KE_CONTROL_PLANE_BIN
cargo build --release --locked -q -p kube-endpoints -p kube-endpoints-testkit
export KE_CONTROLLER_BIN="$repo/target/release/kube-endpoints"
export KE_TESTBACKEND="$repo/target/release/ke-testbackend"
exec "$repo/target/release/ke-demo"
