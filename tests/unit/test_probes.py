"""/readyz is the process's own state; its peers' state is /healthz detail and a metric, never readiness."""

import asyncio
import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from technoshare_common.app import create_app
from technoshare_common.settings import ServiceSettings
from tests.support.servers import wait_until


async def _peer_down() -> None:
    raise ConnectionRefusedError("connection refused")


async def _peer_up() -> None:
    return None


def test_a_peer_down_shows_in_health_and_metrics_never_in_readiness() -> None:
    app = create_app(
        service="probe-test",
        settings=ServiceSettings(),
        routers=[],
        dependencies={"poster": _peer_down, "retrieval": _peer_up},
        dependency_interval=0.05,
    )
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "checks": {}})

        def checked() -> dict[str, Any] | None:
            health = client.get("/healthz").json()
            return health if health["dependencies"]["poster"]["up"] is not None else None

        health = wait_until(checked, 10, 0.02, "the first dependency check")
        assert health["status"] == "ok"
        assert health["dependencies"]["poster"]["up"] is False
        assert "ConnectionRefusedError" in health["dependencies"]["poster"]["detail"]
        assert health["dependencies"]["retrieval"]["up"] is True
        assert REGISTRY.get_sample_value("technoshare_dependency_up", {"dependency": "poster"}) == 0
        assert REGISTRY.get_sample_value("technoshare_dependency_up", {"dependency": "retrieval"}) == 1


def test_a_stuck_readiness_check_is_not_joined_by_one_more_thread_per_probe() -> None:
    release, started = threading.Event(), []

    def blocking_ping() -> None:
        started.append(1)
        release.wait(30)

    async def database_ready() -> None:
        await asyncio.to_thread(blocking_ping)

    app = create_app(
        service="probe-test",
        settings=ServiceSettings(),
        routers=[],
        readiness={"database": database_ready},
        readiness_timeout=0.1,
    )
    with TestClient(app) as client:
        first = client.get("/readyz")
        assert first.status_code == 503 and first.json()["checks"]["database"] == "no answer within 0.1 s"
        for _ in range(5):
            again = client.get("/readyz")
            assert again.status_code == 503 and "has not finished" in again.json()["checks"]["database"]
        assert started == [1]
        release.set()
        wait_until(lambda: client.get("/readyz").status_code == 200, 10, 0.02, "readiness once the check returns")
        assert len(started) == 2


def test_readiness_logs_each_change_once_with_the_failing_check(capsys: pytest.CaptureFixture[str]) -> None:
    failing = {"database": True}

    async def database_ready() -> None:
        if failing["database"]:
            raise ConnectionError("could not connect to server")

    app = create_app(service="probe-test", settings=ServiceSettings(), routers=[], readiness={"db": database_ready})
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/readyz").status_code == 503
        failing["database"] = False
        for _ in range(3):
            assert client.get("/readyz").status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    changes = [line for line in lines if line["message"] in ("ready", "not ready")]
    assert [line["message"] for line in changes] == ["not ready", "ready"]
    assert "could not connect to server" in changes[0]["checks"]["db"]
    assert changes[1]["checks"] == {"db": "ok"}
