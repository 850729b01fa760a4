# syntax=docker/dockerfile:1
#
# dbops: a static (musl) binary on distroless.
#
#   docker build -t dbops:0.1.0 .
#   kind load docker-image dbops:0.1.0      # or push it to your registry
#
# The Helm chart (charts/dbops) runs it as UID 65532 with a read-only root
# filesystem; the binary needs nothing from the image but CA certificates.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGET=x86_64-unknown-linux-musl
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add ${TARGET}
WORKDIR /src

# Dependencies first, against placeholder sources, so that this layer is reused
# until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --target ${TARGET} \
    && rm -rf src

# The real sources. Touching them makes cargo rebuild the crate even when the
# copied files are older than the placeholders.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --target ${TARGET} \
    && cp target/${TARGET}/release/dbops /dbops

# distroless/static: no shell, no libc, CA certificates, user nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /dbops /dbops
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/dbops"]
CMD ["run"]
