#!/usr/bin/env bash
# Installs what the build and tests need on a fresh machine; a no-op when
# everything is there. Go, Rust and Debian's apt are assumed (they come with
# the machine); everything else is installed from the package registries.
set -euo pipefail
need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v openssl >/dev/null || need_apt+=(openssl)
# nftables: the bench harness's per-address fault rules in test namespaces,
# and the e2e test that cuts a replica off the apiserver. prlimit: the e2e
# test that runs a controller under an open-files limit. The font: the
# bench plots' text.
command -v nft >/dev/null || need_apt+=(nftables)
command -v prlimit >/dev/null || need_apt+=(util-linux)
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
# cargo-deny (licenses, bans, sources in scripts/test.sh), pinned; built from
# crates.io once.
cargo_deny_version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $cargo_deny_version"; then
  cargo install --locked cargo-deny --version "$cargo_deny_version"
fi
command -v go >/dev/null || { echo "Go is required to build the control plane" >&2; exit 1; }
