#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io and debootstrap when missing (as root, like CI
# here) and starts dockerd in the background when none runs (no systemd needed). Idempotent.
set -euo pipefail
log_dir=${1:-.cache}
if docker info >/dev/null 2>&1 && command -v debootstrap >/dev/null; then exit 0; fi
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "docker_engine.sh: install docker.io and debootstrap (or start your Docker engine)" >&2; exit 1; }
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "docker_engine.sh: no Docker engine answers and only root can start dockerd" >&2; exit 1; }
  mkdir -p "$log_dir"
  nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
  echo "docker_engine.sh: dockerd did not answer within 60 s; see $log_dir/dockerd.log" >&2
  tail -20 "$log_dir/dockerd.log" >&2
  exit 1
fi
