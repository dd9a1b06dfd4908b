# Benchmarks: `make bench` runs every profile (about 45 minutes on 2 cores),
# `make bench PROFILE=10k` (or a comma-separated list) runs some. Needs root
# (network namespaces); writes BENCHMARKS.md and bench/*.json, bench/*.png.
PROFILE ?= all
CARGO ?= cargo
BENCH_ARGS ?=
BENCH_OUT ?= bench
BENCH_MD ?= BENCHMARKS.md

.PHONY: bench bench-build bench-peer

# The predecessor side by side: `make bench-peer PEER_SRC=DIR` (DIR: a
# checkout of labring/endpoints-operator) builds it with Go, then runs each
# profile for kube-endpoints and for it in one run (the 100k ones for
# kube-endpoints only); writes BENCHMARKS.md (kube-endpoints' runs as the
# main report, plus the side-by-side section), results in bench/peer/.
PEER_PROFILE ?= smoke,10k,unreachable,mixed,100k,100k-sharded
bench-peer: bench-build
	@test -n "$(PEER_SRC)" || { echo "set PEER_SRC to a checkout of labring/endpoints-operator" >&2; exit 2; }
	KE_TESTBACKEND=$(CURDIR)/target/release/ke-testbackend \
	target/release/kube-endpoints-bench --profile $(PEER_PROFILE) \
		--peer-bin "$$(scripts/build-peer.sh $(PEER_SRC))" \
		--peer-crd $(PEER_SRC)/config/crd/sealos.io_clusterendpoints.yaml \
		--out-dir $(BENCH_OUT) --markdown $(BENCH_MD) $(BENCH_ARGS)

bench: bench-build
	KE_TESTBACKEND=$(CURDIR)/target/release/ke-testbackend \
	target/release/kube-endpoints-bench --profile $(PROFILE) \
		--out-dir $(BENCH_OUT) --markdown $(BENCH_MD) $(BENCH_ARGS)

bench-build:
	scripts/install-deps.sh
	$(CARGO) build --release -p kube-endpoints -p kube-endpoints-bench -p kube-endpoints-testkit
