# syntax=docker/dockerfile:1
#
# vpsnap operator image: a release build of the `vpsnap` binary on distroless, non-root.
#
#   docker build -t ghcr.io/vpsnap/vpsnap:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/vpsnap/vpsnap:0.1.0 --push .
#
# Not built in this repository's own environment (it has no container engine); kept correct by
# reading. Needs BuildKit (the default builder since Docker 23) for the cache mounts.

ARG RUST_VERSION=1.95
# Cargo features of the image's binary: `otel` lets the chart's `tracing.enabled` export traces
# (docs/operations.md); build with --build-arg FEATURES= for a binary without OpenTelemetry.
ARG FEATURES=otel

FROM rust:${RUST_VERSION}-bookworm AS build
ARG FEATURES
WORKDIR /src
COPY . .
# glibc build on bookworm (glibc 2.36) for distroless cc-debian12 (glibc 2.36). TLS is rustls +
# ring: no OpenSSL at build or run time. The cache mounts keep the registry and target/ between
# builds; they are not part of any layer, so the binary is copied out of target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vpsnap --features "$FEATURES" \
 && install -D -m 0755 target/release/vpsnap /out/vpsnap

# cc-debian12: glibc and libgcc_s for the Rust binary, CA certificates for TLS to provider APIs;
# time zones come from jiff's bundled database, not the image. nonroot: uid/gid 65532, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="vpsnap" \
      org.opencontainers.image.description="Kubernetes operator for declarative VPS snapshots, backups, schedules and restores" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/vpsnap/vpsnap"
COPY --from=build /out/vpsnap /vpsnap
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/vpsnap"]
CMD ["controller"]
