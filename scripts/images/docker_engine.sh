#!/usr/bin/env bash
# Makes sure a Docker engine answers. Any running engine will do (Docker Desktop, docker-ce, rootless): then this
# does nothing. Otherwise, as root (CI here), it installs Debian's docker.io when no dockerd exists and starts
# dockerd in the background (no systemd needed). Idempotent.
set -euo pipefail
log_dir=${1:-.cache}
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "docker_engine.sh: no Docker engine answers (\`docker info\`): start yours, or run as root to have one started" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
mkdir -p "$log_dir"
nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
for _ in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
echo "docker_engine.sh: dockerd did not answer within 60 s; see $log_dir/dockerd.log" >&2
tail -20 "$log_dir/dockerd.log" >&2
exit 1
