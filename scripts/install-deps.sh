#!/usr/bin/env bash
# Installs what the build and tests need on a fresh machine; a no-op when
# everything is there. Go, Rust and Debian's apt are assumed (they come with
# the machine); everything else is installed from the package registries.
set -euo pipefail
need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v openssl >/dev/null || need_apt+=(openssl)
# The bench harness (make bench): per-address fault rules in test namespaces
# and a font for the plots' text.
command -v nft >/dev/null || need_apt+=(nftables)
# The data-plane tests: kube-proxy's iptables mode (iptables-nft) and curl
# (kube-proxy's metrics inside a node namespace; the demo).
command -v iptables-save >/dev/null || need_apt+=(iptables)
command -v curl >/dev/null || need_apt+=(curl)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
command -v protoc >/dev/null || true   # not needed: tonic-health ships generated code
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
command -v go >/dev/null || { echo "Go is required to build the control plane" >&2; exit 1; }
