# syntax=docker/dockerfile:1
# The kube-endpoints controller image: a static-enough Rust binary (rustls,
# no OpenSSL) on distroless cc (glibc + libgcc only: no shell, no package
# manager), running as the distroless nonroot user 65532.
#
#   docker build -t ghcr.io/khulnasoft-lab/kube-endpoints:0.1.0 .
#
# The chart's securityContext (runAsNonRoot, runAsUser 65532,
# readOnlyRootFilesystem) matches this image: the controller writes no files.

FROM docker.io/library/rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build artefacts between builds (BuildKit);
# the binary is copied out of the cached target dir so the next stage sees it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kube-endpoints \
 && install -D -m 0755 target/release/kube-endpoints /out/kube-endpoints

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="kube-endpoints" \
      org.opencontainers.image.description="Health-checked Services and EndpointSlices for hosts outside Kubernetes" \
      org.opencontainers.image.source="https://github.com/khulnasoft-lab/kube-endpoints" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/kube-endpoints /kube-endpoints
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/kube-endpoints"]
CMD ["run"]
