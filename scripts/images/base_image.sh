#!/usr/bin/env bash
# A stand-in for python:3.11-slim-bookworm made from Debian's packages, for machines that reach a package
# registry but no container registry (CI here). Usage: scripts/images/base_image.sh TAG
# Debian's python3.11 (same minor version as the official image) with pip, the host's CA bundle (a registry
# proxy may bring its own CA) and uv told to trust it.
set -euo pipefail
tag=${1:?usage: base_image.sh TAG}
if ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "base_image.sh: debootstrap is missing (apt-get install debootstrap), or set PYTHON_IMAGE" >&2; exit 1; }
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3.11,python3,python3-pip,ca-certificates bookworm "$rootfs" "$mirror" >&2
ln -sf python3 "$rootfs/usr/bin/python"
# debootstrap takes bookworm as released: add the host's suites (security, updates) and upgrade, as the official
# image is rebuilt with them (from a bookworm host, whose sources name its mirrors).
if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release && ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
  rm -f "$rootfs/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/"
  chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq' >&2
fi
# After the upgrade, which regenerates the bundle from Debian's CAs.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt UV_NATIVE_TLS=1 PIP_BREAK_SYSTEM_PACKAGES=1' \
  --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "$tag"
