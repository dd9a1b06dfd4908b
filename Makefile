# Benchmarks: `make bench` runs every profile (about 30 minutes on 2 cores),
# `make bench PROFILE=10k` (or a comma-separated list) runs some. Needs root
# (network namespaces); writes BENCHMARKS.md and bench/*.json, bench/*.png.
PROFILE ?= all
CARGO ?= cargo
BENCH_ARGS ?=

.PHONY: bench bench-build

bench: bench-build
	KE_TESTBACKEND=$(CURDIR)/target/release/ke-testbackend \
	target/release/kube-endpoints-bench --profile $(PROFILE) \
		--out-dir bench --markdown BENCHMARKS.md $(BENCH_ARGS)

bench-build:
	scripts/install-deps.sh
	$(CARGO) build --release -p kube-endpoints -p kube-endpoints-bench -p kube-endpoints-testkit
