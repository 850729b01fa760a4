# syntax=docker/dockerfile:1
#
# dbops for Docker users. The tested path is scripts/build-image.sh, which
# needs no Docker daemon and pulls nothing; this file builds the same image
# layout: no base layer, only
#   /dbops                               a statically linked (glibc) binary
#   /etc/ssl/certs/ca-certificates.crt   CA certificates
#   /etc/passwd, /etc/group              root, and nonroot (65532)
#   /etc/nsswitch.conf                   hosts: files dns
#   /tmp (1777), /home/nonroot (65532)
# run as 65532:65532 with entrypoint /dbops and command `run`.
#
#   docker build -t dbops:0.1.0 .
#   kind load docker-image dbops:0.1.0      # or push it to your registry
#
# The Helm chart (charts/dbops) runs it as UID 65532 with a read-only root
# filesystem; the binary needs nothing from the image but CA certificates.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGET=x86_64-unknown-linux-gnu
WORKDIR /src

# Dependencies first, against placeholder sources, so that this layer is reused
# until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && RUSTFLAGS="-C target-feature=+crt-static" \
       cargo build --release --locked --target ${TARGET} --bin dbops \
    && rm -rf src

# The real sources. Touching them makes cargo rebuild the crate even when the
# copied files are older than the placeholders.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && RUSTFLAGS="-C target-feature=+crt-static" \
       cargo build --release --locked --target ${TARGET} --bin dbops

# The image's one layer, as scripts/build-image.sh writes it.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/nonroot \
    && install -m 0755 target/${TARGET}/release/dbops /rootfs/dbops \
    && install -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
    && printf 'hosts: files dns\n' >/rootfs/etc/nsswitch.conf \
    && chmod 1777 /rootfs/tmp \
    && chown 65532:65532 /rootfs/home/nonroot

FROM scratch
COPY --from=builder /rootfs /
USER 65532:65532
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8080
ENTRYPOINT ["/dbops"]
CMD ["run"]
