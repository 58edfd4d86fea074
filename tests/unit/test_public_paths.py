"""Headers that carry a job id or a trace context between the services are ignored on public paths (Slack's)."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.testclient import TestClient

from technoshare_common.app import create_app
from technoshare_common.context import JOB_ID_HEADER, TRACEPARENT_HEADER, job_id_var, traceparent_var
from technoshare_common.settings import ServiceSettings

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_public_path_ignores_the_internal_context_headers(tmp_path: Path) -> None:
    router = APIRouter()

    @router.get("/public")
    @router.get("/internal")
    def seen() -> dict[str, str | None]:
        return {"job": job_id_var.get(), "trace": traceparent_var.get()}

    settings = ServiceSettings(MLFLOW_ENABLE_TRACING="false", MLFLOW_SPOOL_DIR=str(tmp_path))
    app = create_app(service="test", settings=settings, routers=[router], public_paths=frozenset({"/public"}))
    headers = {JOB_ID_HEADER: "job-from-outside", TRACEPARENT_HEADER: TRACEPARENT}
    with TestClient(app) as client:
        assert client.get("/public", headers=headers).json() == {"job": None, "trace": None}
        assert client.get("/internal", headers=headers).json() == {"job": "job-from-outside", "trace": TRACEPARENT}


def test_ingest_declares_slacks_endpoint_public() -> None:
    from ingest.routers.slack import PUBLIC_PATHS

    assert {"/slack/events"} == PUBLIC_PATHS
