"""The gateway's calls in MLflow: an LLM span in the caller's trace, optional per-call runs, and no harm when down."""

import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from mlflow import MlflowClient

from llm_gateway.client import achat_with_tracking
from llm_gateway.gateway import SPAN_NAME, Gateway
from llm_gateway.settings import GatewaySettings
from tests.support.mlflow_server import MlflowServer
from tests.support.openai_upstream import OpenAIUpstream
from tests.support.servers import ServiceProcess, free_port, serve_in_thread, wait_until

GPT_4O_MINI_COST = 0.0003369


@pytest.fixture
def upstream_url() -> Iterator[str]:
    with serve_in_thread(OpenAIUpstream().app) as url:
        yield url


def start_gateway_process(upstream_url: str, tmp_path: Path, tracking_uri: str, **env: str) -> ServiceProcess:
    process = ServiceProcess(
        "llm_gateway",
        free_port(),
        {
            "LLM_UPSTREAM_BASE_URL": f"{upstream_url}/v1",
            "OPENAI_API_KEY": "sk-upstream-secret",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "TECHNOSHARE_INTERNAL_TOKEN": "t",
            **env,
        },
        tmp_path,
    )
    process.start()
    return process


# The caller's side runs in a process of its own: MLflow's tracing state (its export queue, tracking URI and span
# processors) is global, and what earlier tests in this process left there (a queue of traces for a server that has
# since stopped) once delayed this trace past any reasonable wait.
CALLER = """
import json, sys
import mlflow, openai
from mlflow.tracing.distributed import get_tracing_context_headers_for_http_request
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("technoshare_commentator")
client = openai.OpenAI(base_url=sys.argv[2] + "/v1", api_key="t", max_retries=0)
with mlflow.start_span("stage_a.run", span_type="LLM") as caller:
    headers = get_tracing_context_headers_for_http_request()
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={**headers, "X-Technoshare-Persona": "stage_a", "X-Technoshare-Stage": "stage_a",
                       "X-Job-Id": "job-42", "X-Technoshare-Channel": "C123"},
    )
mlflow.flush_trace_async_logging()
print(json.dumps({"trace_id": caller.trace_id, "span_id": caller.span_id}))
"""


def test_each_call_is_an_llm_span_in_the_callers_trace(upstream_url: str, tmp_path: Path, mlflow_server: str) -> None:
    gateway = start_gateway_process(upstream_url, tmp_path, mlflow_server)
    try:
        wait_until(lambda: "MLflow tracing on" in gateway.log_path.read_text(), timeout=60, what="gateway tracing")
        called = subprocess.run(
            [sys.executable, "-c", CALLER, mlflow_server, gateway.url], capture_output=True, text=True, timeout=120
        )
        assert called.returncode == 0, called.stderr
        caller = json.loads(called.stdout.strip().splitlines()[-1])
        client = MlflowClient(mlflow_server)

        def gateway_span() -> Any:
            try:
                trace = client.get_trace(caller["trace_id"])
            except Exception:
                return None
            spans = [span for span in trace.data.spans if span.name == SPAN_NAME]
            return (trace, spans[0]) if spans else None

        trace, span = wait_until(gateway_span, timeout=60, interval=0.5, what="the gateway's span")
    finally:
        gateway.stop()
    assert span.span_type == "LLM"
    assert span.parent_id == caller["span_id"]
    assert span.attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 2006,
        "output_tokens": 300,
        "total_tokens": 2306,
        "cache_read_input_tokens": 1920,
    }
    assert span.attributes["mlflow.llm.cost"]["total_cost"] == pytest.approx(GPT_4O_MINI_COST)
    assert span.attributes["persona"] == "stage_a"
    assert span.attributes["job_id"] == "job-42"
    assert span.attributes["channel_id"] == "C123"
    assert span.attributes["mlflow.llm.model"] == "gpt-4o-mini"
    assert span.inputs["messages"] == [{"role": "user", "content": "hi"}]
    assert trace.info.token_usage["total_tokens"] == 2306
    assert "sk-upstream-secret" not in str(trace.to_dict())


async def test_per_call_runs_follow_the_established_schema(upstream_url: str, mlflow_server: str) -> None:
    settings = GatewaySettings(
        LLM_UPSTREAM_BASE_URL=f"{upstream_url}/v1",
        OPENAI_API_KEY="sk-upstream-secret",
        MLFLOW_TRACKING_URI=mlflow_server,
        LLM_LOG_CALL_RUNS=True,
    )
    gateway = Gateway(settings)
    try:
        await achat_with_tracking("gpt-4o-mini", "hi", persona_id="stage_b", job_id="job-7", gateway=gateway)
        assert gateway.accounting.call_runs is not None
        gateway.accounting.call_runs.flush()
    finally:
        await gateway.aclose()
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(f"stage_b_{dt.datetime.now(dt.UTC):%Y-%m-%d}")
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id], filter_string="tags.job_id = 'job-7'")
    assert run.data.params["persona_id"] == "stage_b"
    assert run.data.params["model"] == "gpt-4o-mini"
    assert '"content": "hi"' in run.data.params["prompt"]
    assert run.data.params["response"] == "Gateways count tokens."
    assert run.data.metrics["prompt_tokens"] == 2006
    assert run.data.metrics["completion_tokens"] == 300
    assert run.data.metrics["total_tokens"] == 2306
    assert run.data.metrics["cost_usd"] == pytest.approx(GPT_4O_MINI_COST)
    assert run.data.metrics["latency_ms"] > 0


@pytest.mark.mlflow
@pytest.mark.slow  # an MLflow server of its own, stopped and started again
def test_calls_go_on_while_mlflow_is_down_and_their_spans_land_once_it_is_back(
    upstream_url: str, tmp_path: Path
) -> None:
    """Tracing must be on before MLflow goes away: a gateway that never reached MLflow records no span at all,
    and its spool (the path under test) would never be used."""
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    gateway = start_gateway_process(upstream_url, tmp_path, server.url, MLFLOW_SPOOL_DIR=str(tmp_path / "spool"))
    try:
        wait_until(lambda: "MLflow tracing on" in gateway.log_path.read_text(), timeout=60, what="gateway tracing")
        server.stop()
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="t", max_retries=0)
        durations = []
        for _ in range(5):
            start = time.perf_counter()
            completion = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "x"}],
                extra_headers={"X-Job-Id": "job-during-outage"},
            )
            durations.append(time.perf_counter() - start)
            assert completion.usage is not None and completion.usage.total_tokens == 2306
        # Nothing waits on MLflow: a span sent from the call itself would wait out the client's retries toward the
        # dead server (MLFLOW_HTTP_REQUEST_MAX_RETRIES=2 backs off 4 s or more).
        assert max(durations) < 3.5, durations
        wait_until(lambda: spooled(gateway) >= 5, timeout=60, what="the calls' spans in the spool")
        assert "MLflow is unavailable; spans and traces wait in the spool" in gateway.log_path.read_text()

        server.start()
        wait_until(lambda: spooled(gateway) == 0, timeout=120, interval=0.5, what="the spool to drain")
        tracking = MlflowClient(server.url)
        experiment = tracking.get_experiment_by_name("technoshare_commentator")
        assert experiment is not None
        traces = tracking.search_traces(locations=[experiment.experiment_id], max_results=50)
    finally:
        gateway.stop()
        server.stop()
    spans = [span for trace in traces for span in trace.data.spans if span.name == SPAN_NAME]
    assert len(spans) == 5 and {span.attributes["job_id"] for span in spans} == {"job-during-outage"}


def spooled(gateway: ServiceProcess) -> float:
    """The gateway's spans and traces waiting in its spool for MLflow."""
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    found = re.findall(r'technoshare_mlflow_spool_backlog\{kind="trace"\} ([0-9.]+)', metrics)
    return float(found[0]) if found else 0.0
