"""Every PromQL query of the Grafana dashboard, run against a real Prometheus that scraped the five services
(and a Pushgateway holding an evaluation's pass rate) after a few jobs: each must return data."""

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from evaluation.runner import EvalSummary, ExampleResult, push_to_prometheus
from evaluation.scorers import HARD_SCORERS
from tests.e2e.test_job_in_mlflow import reaction_event
from tests.support.servers import ROOT, free_port, wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

TOOLS = ROOT / ".cache" / "tools" / "prometheus" / "usr" / "bin"
DASHBOARD = ROOT / "charts" / "technoshare" / "files" / "dashboard.json"


@contextmanager
def process(command: list[str], log: Path) -> Iterator[None]:
    assert Path(command[0]).exists(), f"{command[0]} is missing: run `make chart-check` (make test does)"
    with log.open("wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        child.terminate()
        child.wait(timeout=15)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_dashboard_query_returns_data_from_a_real_prometheus(tmp_path: Path, mlflow_server: str) -> None:
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_SPOOL_DIR": str(tmp_path / "spool"),
        # a priced model (the scripted upstream answers to any name), so the cost panels have dollars to show
        "STAGE_A_MODEL": "gpt-4o-mini",
        "STAGE_B_MODEL": "gpt-4o-mini",
    }
    pushgateway = f"127.0.0.1:{free_port()}"
    prometheus = f"http://127.0.0.1:{free_port()}"
    with Stack(tmp_path, env=env) as stack:
        targets = [service.url.removeprefix("http://") for service in stack.services.values()]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "technoshare", "static_configs": [{"targets": targets}]},
                {"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": [pushgateway]}]},
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        with (
            process(
                [str(TOOLS / "prometheus-pushgateway"), f"--web.listen-address={pushgateway}"],
                tmp_path / "pushgateway.log",
            ),
            process(
                [
                    str(TOOLS / "prometheus"),
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address={prometheus.removeprefix('http://')}",
                ],
                tmp_path / "prometheus.log",
            ),
        ):
            wait_until(lambda: _ready(f"http://{pushgateway}/-/ready"), timeout=30, what="the Pushgateway")
            wait_until(lambda: _ready(f"{prometheus}/-/ready"), timeout=60, what="Prometheus")
            _run_jobs(stack)
            push_to_prometheus(pushgateway, _eval_summary())
            time.sleep(5)  # a few scrapes after the jobs, so rate() has two samples of each counter
            _run_jobs(stack)
            queries = dashboard_queries()
            deadline = time.monotonic() + 90
            while True:
                empty = [f"{title}: {expr}" for title, expr in queries if not _query(prometheus, expr)]
                if not empty or time.monotonic() > deadline:
                    break
                time.sleep(2)
    assert len(queries) >= 12
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _query(prometheus: str, expr: str) -> list[dict]:  # type: ignore[type-arg]
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def _run_jobs(stack: Stack) -> None:
    """A good reply (and a 👍 on it), and a draft that fails the gates, answered by the extractive fallback."""
    for text in ("<https://arxiv.org/abs/2106.09685>", "<https://arxiv.org/abs/2106.09685> break-the-gates"):
        event = stack.message_event(text)
        assert stack.slack_request(event).status_code == 200
        [job] = stack.wait_jobs_done(event["event"]["ts"], 1)
        assert job["outcome"] == "success", job
        if "break-the-gates" not in text:
            assert stack.slack_request(reaction_event(job["slack_message_ts"], "+1")).status_code == 200


def _eval_summary() -> EvalSummary:
    result = ExampleResult(
        id="arxiv-2106-09685",
        url="https://arxiv.org/abs/2106.09685",
        outcome="success",
        repaired=False,
        scores=dict.fromkeys(HARD_SCORERS, 1.0),
        rationales={},
        error=None,
        text="",
        seconds=1.0,
        tokens=10,
    )
    return EvalSummary(alias="prod", prompt_versions={}, app_version="technoshare-test", results=[result])
