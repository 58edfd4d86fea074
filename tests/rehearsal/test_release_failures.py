"""The rehearsal fails loudly: a container that exits, a readiness probe that never passes and a Job that keeps
failing each stop it with the container's own log lines."""

from pathlib import Path
from typing import Any

import pytest

from tests.rehearsal.conftest import built_images
from tests.rehearsal.kube import Manifests
from tests.rehearsal.release import RehearsalFailed, Release
from tests.support.servers import free_port

pytestmark = pytest.mark.rehearsal


def pod(script: str, port: int) -> dict[str, Any]:
    return {
        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
        "containers": [
            {
                "name": "app",
                "image": built_images()["images"]["ingest"],
                "command": ["/bin/sh", "-c", script],
                "ports": [{"name": "http", "containerPort": port}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
            }
        ],
    }


def release(tmp_path: Path, *objects: dict[str, Any]) -> Release:
    return Release(Manifests(list(objects), "rehearsal-test"), tmp_path, ready_timeout=20)


def deployment(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"name": name}, "spec": {"template": {"metadata": {}, "spec": spec}}}


def test_a_container_that_exits_fails_with_its_logs(tmp_path: Path) -> None:
    broken = release(tmp_path, deployment("exits", pod("echo cannot start: no config >&2; exit 3", free_port())))
    try:
        with pytest.raises(RehearsalFailed, match=r"(?s)exits exited with 3.*cannot start: no config"):
            broken.install()
    finally:
        broken.uninstall()


def test_a_readiness_probe_that_never_passes_fails_with_its_logs(tmp_path: Path) -> None:
    port = free_port()
    script = f"echo listening but never ready; exec python -m http.server {port} --bind 127.0.0.1"
    unready = release(tmp_path, deployment("unready", pod(script, port)))
    try:
        with pytest.raises(RehearsalFailed, match=r"(?s)readiness probe /readyz not passing.*never ready"):
            unready.install()
    finally:
        unready.uninstall()


def test_a_job_is_retried_up_to_its_backoff_limit_then_fails_with_its_logs(tmp_path: Path) -> None:
    spec = pod("echo migration failed; exit 1", free_port())
    job = {
        "kind": "Job",
        "metadata": {"name": "migrate", "annotations": {"helm.sh/hook": "post-install"}},
        "spec": {"backoffLimit": 1, "template": {"spec": spec | {"restartPolicy": "OnFailure"}}},
    }
    failing = release(tmp_path, job)
    try:
        with pytest.raises(RehearsalFailed, match=r"(?s)Job migrate failed 2 time\(s\).*migration failed"):
            failing.install()
    finally:
        failing.uninstall()
