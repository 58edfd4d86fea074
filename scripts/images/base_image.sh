#!/usr/bin/env bash
# A stand-in for python:3.11-slim-bookworm made from Debian's packages, for machines that reach a package
# registry but no container registry (CI here). Usage: scripts/images/base_image.sh TAG
# Debian's python3.11 (same minor version as the official image) with pip, the host's CA bundle (a registry
# proxy may bring its own CA) and uv told to trust it.
set -euo pipefail
tag=${1:?usage: base_image.sh TAG}
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "base_image.sh: $tool is missing (apt-get install debootstrap docker.io)" >&2; exit 1; }
done
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3.11,python3,python3-pip,ca-certificates bookworm "$rootfs" "$mirror" >&2
ln -sf python3 "$rootfs/usr/bin/python"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt UV_NATIVE_TLS=1 PIP_BREAK_SYSTEM_PACKAGES=1' \
  --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "$tag"
