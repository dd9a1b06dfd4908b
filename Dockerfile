# syntax=docker/dockerfile:1
# The kube-endpoints controller image: a static-enough Rust binary (rustls,
# no OpenSSL) on distroless cc (glibc + libgcc only: no shell, no package
# manager), running as the distroless nonroot user 65532.
#
#   docker build -t ghcr.io/khulnasoft-lab/kube-endpoints:0.1.0 .
#
# The chart's securityContext (runAsNonRoot, runAsUser 65532,
# readOnlyRootFilesystem) matches this image: the controller writes no files.
#
# Base images are pinned by digest (the multi-arch index), so a rebuild of a
# commit uses the same compiler and runtime libraries; a tag alone moves.
# The tag stays for readers. To move a pin, resolve the tag again
# (`docker buildx imagetools inspect IMAGE:TAG`), review the new image and
# update tag comment and digest together. A test
# (crates/controller/tests/hardening.rs) fails on any unpinned FROM.
#   rust:1-bookworm                      as of 2026-09-20 (Rust 1.98.1)
#   gcr.io/distroless/cc-debian12:nonroot as of 2026-09-20
# These digests were not pulled from the build machine (no registry access
# there); they are the index digests published for those tags at that date,
# each found identically in several independent public Dockerfiles. Verify
# them with `imagetools inspect` before the first release build.

FROM docker.io/library/rust:1-bookworm@sha256:93ce27a88655056a51dbdd8f5f2d7ddc071c7b0070fb288a37b5a285fc83971e AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build artefacts between builds (BuildKit);
# the binary is copied out of the cached target dir so the next stage sees it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kube-endpoints \
 && install -D -m 0755 target/release/kube-endpoints /out/kube-endpoints

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
LABEL org.opencontainers.image.title="kube-endpoints" \
      org.opencontainers.image.description="Health-checked Services and EndpointSlices for hosts outside Kubernetes" \
      org.opencontainers.image.source="https://github.com/khulnasoft-lab/kube-endpoints" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/kube-endpoints /kube-endpoints
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/kube-endpoints"]
CMD ["run"]
