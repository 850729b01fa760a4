#!/usr/bin/env bash
# Builds the dbops container image without Docker, buildah or any base image:
# a statically linked binary, CA certificates and a `nonroot` (65532) user,
# written as one layer into an image archive by this script itself.
#
#   scripts/build-image.sh [NAME:TAG]        # default dbops:<version in Cargo.toml>
#
# Writes target/image/dbops-<tag>.tar, an OCI image layout that also carries a
# Docker `manifest.json`, so every common importer takes it:
#   kind load image-archive target/image/dbops-<tag>.tar
#   k3d image import target/image/dbops-<tag>.tar
#   ctr -n k8s.io images import target/image/dbops-<tag>.tar     # containerd (and ../real-node/import-image.sh)
#   docker load -i target/image/dbops-<tag>.tar
# It is imported as docker.io/library/<NAME>:<TAG> (the name Kubernetes gives
# an image reference without a registry), so the chart's default
# `image.repository: dbops` finds it.
#
# Needs: cargo (stable, the host's x86_64-unknown-linux-gnu target), tar, gzip,
# sha256sum, and the host's CA bundle (/etc/ssl/certs/ca-certificates.crt, or
# CA_BUNDLE=...). The build is reproducible: file times are SOURCE_DATE_EPOCH
# (default: the last commit's time), owners are numeric, entries sorted.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ref=${1:-dbops:$version}
name=${ref%:*}
tag=${ref##*:}
[ "$name" != "$ref" ] || tag=$version
target=${TARGET:-x86_64-unknown-linux-gnu}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
out_dir=target/image
archive=$out_dir/${name##*/}-$tag.tar

[ -s "$ca_bundle" ] || { echo "build-image: no CA bundle at $ca_bundle (install ca-certificates, or set CA_BUNDLE)" >&2; exit 1; }
for tool in cargo tar gzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing" >&2; exit 1; }
done

start=$(date +%s)
# A glibc binary linked statically: the image has no libc to load. (The musl
# target would do as well, where rustup can install it.)
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --bin dbops
binary=target/$target/release/dbops
if ldd "$binary" >/dev/null 2>&1 && ! ldd "$binary" 2>&1 | grep -q "not a dynamic executable\|statically linked"; then
  echo "build-image: $binary is dynamically linked" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot" "$work/blobs/sha256"
# Without its symbol table (about two thirds of the file); panics still name
# the source location.
if command -v strip >/dev/null; then
  strip --strip-all -o "$root/dbops" "$binary"
  chmod 0755 "$root/dbops"
else
  install -m 0755 "$binary" "$root/dbops"
fi
install -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
# Name lookups in a static glibc binary: hosts file, then DNS.
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"

# The one layer: sorted, numeric owners (nonroot's home is 65532's), fixed times.
layer=$work/layer.tar
(cd "$root" && tar --sort=name --format=posix --numeric-owner --owner=0 --group=0 \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  --mtime="@$epoch" -cf "$layer" --exclude=./home/nonroot . \
  && tar --sort=name --format=posix --numeric-owner --owner=65532 --group=65532 \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$epoch" -rf "$layer" ./home/nonroot)
diff_id=$(sha256sum "$layer" | cut -d' ' -f1)
gzip -9 -n -c "$layer" >"$work/layer.tar.gz"
layer_digest=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$work/blobs/sha256/$layer_digest"

created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
# The image config: what the Dockerfile's final stage says, too.
printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"$created\",\
\"config\":{\"User\":\"65532:65532\",\"Entrypoint\":[\"/dbops\"],\"Cmd\":[\"run\"],\
\"ExposedPorts\":{\"8080/tcp\":{}},\"Env\":[\"PATH=/\",\"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\"],\
\"WorkingDir\":\"/\",\"Labels\":{\"org.opencontainers.image.title\":\"dbops\",\"org.opencontainers.image.version\":\"$version\"}},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]},\
\"history\":[{\"created\":\"$created\",\"created_by\":\"scripts/build-image.sh\"}]}" >"$work/config.json"
config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$work/blobs/sha256/$config_digest"

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer_digest\",\"size\":$layer_size}]}" >"$work/manifest"
manifest_digest=$(sha256sum "$work/manifest" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$work/manifest")
mv "$work/manifest" "$work/blobs/sha256/$manifest_digest"

case $name in
  */*.*/* | *.*/* | localhost/*) full=$name ;;   # has a registry
  */*) full=docker.io/$name ;;
  *) full=docker.io/library/$name ;;
esac
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size,\
\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},\
\"annotations\":{\"io.containerd.image.name\":\"$full:$tag\",\"org.opencontainers.image.ref.name\":\"$tag\"}}]}" >"$work/index.json"
# For `docker load` and importers that read Docker archives.
printf '%s' "[{\"Config\":\"blobs/sha256/$config_digest\",\"RepoTags\":[\"$name:$tag\"],\"Layers\":[\"blobs/sha256/$layer_digest\"]}]" >"$work/manifest.json"

mkdir -p "$out_dir"
(cd "$work" && tar --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$epoch" \
  -cf - oci-layout index.json manifest.json blobs) >"$archive.tmp"
mv "$archive.tmp" "$archive"

took=$(($(date +%s) - start))
size=$(stat -c %s "$archive")
echo "build-image: $archive ($full:$tag, $((size / 1024 / 1024)) MiB archive, $((layer_size / 1024 / 1024)) MiB compressed layer, binary $(($(stat -c %s "$root/dbops") / 1024 / 1024)) MiB) in ${took}s"
echo "build-image: load it with one of:"
echo "  kind load image-archive $archive"
echo "  k3d image import $archive"
echo "  ctr -n k8s.io images import $archive"
echo "  docker load -i $archive"
