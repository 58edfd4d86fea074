"""Records MLflow refuses are loud, records it cannot take yet are not.

A real MLflow refuses every call with 403 when the Host header is not in its --allowed-hosts, as a real
install once did without anything showing it; a server answering 503 and a port nobody listens on must
instead leave the records waiting in the spool.
"""

import base64
import json
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from mlflow.entities import Span
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from composer.tracking import JobTracker
from technoshare_common.trace_spool import SpoolingSpanExporter, trace_spool
from tests.support.jobs import arxiv_job
from tests.support.mlflow_server import MlflowServer
from tests.support.servers import free_port, serve_in_thread

PARAMS = {"stage_b.temperature": 0.2}


def refused(kind: str, status: str) -> float:
    labels = {"kind": kind, "status": status}
    return REGISTRY.get_sample_value("technoshare_mlflow_spool_rejected_total", labels) or 0.0


def all_refused(kind: str) -> float:
    """Refusals of this kind counted so far, whatever their status."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "technoshare_mlflow_spool_rejected"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["kind"] == kind
    )


def spans_record() -> dict:  # type: ignore[type-arg]
    """One finished root span, as the trace spool keeps it."""
    trace_id = secrets.token_bytes(16)
    now = time.time_ns()
    span = {
        "trace_id": base64.b64encode(trace_id).decode(),
        "span_id": base64.b64encode(secrets.token_bytes(8)).decode(),
        "parent_span_id": None,
        "name": "job",
        "start_time_unix_nano": now - 1_000_000,
        "end_time_unix_nano": now,
        "events": [],
        "status": {"code": "STATUS_CODE_OK", "message": ""},
        "attributes": {"mlflow.traceRequestId": json.dumps(f"tr-{trace_id.hex()}")},
        "links": [],
    }
    return {"kind": "spans", "experiment_id": "0", "spans": [span]}


@pytest.fixture(scope="module")
def refusing_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow whose Host-header check allows only its in-cluster name, so 127.0.0.1 gets 403."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_ALLOWED_HOSTS", "mlflow.technoshare.svc")
        server = MlflowServer(tmp_path_factory.mktemp("refusing-mlflow"))
        server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.mlflow
def test_a_job_run_mlflow_refuses_is_counted_by_status_logged_and_set_aside(
    refusing_mlflow: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = JobTracker(refusing_mlflow, tmp_path / "spool")
    before = refused("job_run", "403")
    tracker.submit(*arxiv_job("job-refused"), PARAMS)
    with caplog.at_level(logging.ERROR, logger="technoshare_common.spool"):
        assert tracker.spool.drain_once() is True  # set aside: nothing left waiting
    assert refused("job_run", "403") == before + 1
    assert tracker.backlog() == 0 and tracker.spool.set_aside() == 1
    [entry] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert entry.status == "403" and entry.record_kind == "job_run"
    assert "Invalid Host header" in entry.error


@pytest.mark.mlflow
def test_spans_mlflow_refuses_are_counted_whether_sent_at_once_or_from_the_spool(
    refusing_mlflow: str, tmp_path: Path
) -> None:
    spool = trace_spool(tmp_path / "traces", refusing_mlflow)
    exporter = SpoolingSpanExporter(refusing_mlflow, spool)
    before = refused("trace", "403")
    exporter._log_spans("0", [Span.from_dict(span) for span in spans_record()["spans"]])  # MLflow's export hook
    assert refused("trace", "403") == before + 1
    spool.put(spans_record())  # as after an outage
    assert spool.drain_once() is True
    assert refused("trace", "403") == before + 2
    assert spool.backlog() == 0 and spool.set_aside() == 1


async def unavailable(request: Request) -> PlainTextResponse:
    return PlainTextResponse("upstream connect error", status_code=503)


@pytest.mark.parametrize("mlflow", ["answering 503", "unreachable"])
def test_a_5xx_or_an_unreachable_mlflow_leaves_the_record_waiting_uncounted(
    mlflow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the spool retries; MLflow's own would only wait
    with ExitStack() as stack:
        if mlflow == "answering 503":
            app = Starlette(routes=[Route("/{path:path}", unavailable, methods=["GET", "POST", "PATCH", "DELETE"])])
            url = stack.enter_context(serve_in_thread(app))
        else:
            url = f"http://127.0.0.1:{free_port()}"
        tracker = JobTracker(url, tmp_path / "spool")
        before = all_refused("job_run")
        tracker.submit(*arxiv_job("job-waiting"), PARAMS)
        assert tracker.spool.drain_once() is False
    assert tracker.backlog() == 1 and tracker.spool.set_aside() == 0
    assert all_refused("job_run") == before
