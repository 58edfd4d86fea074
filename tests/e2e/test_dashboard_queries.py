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
from mlflow import MlflowClient

from evaluation.runner import EvalSummary, ExampleResult, push_to_prometheus
from evaluation.scorers import HARD_SCORERS
from scripts.compare_versions import compare
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
            # scripts/compare_versions.py on the same Prometheus and MLflow: the jobs' version beside the eval's.
            [series] = _query(prometheus, "sum by (app_version) (technoshare_live_replies_total)")
            live = series["metric"]["app_version"]
            client = MlflowClient(mlflow_server)
            figures = wait_until(
                lambda: _compared(client, prometheus, live), timeout=90, interval=1, what="the jobs' runs and votes"
            )
            printed = subprocess.run(
                [
                    str(ROOT / ".venv" / "bin" / "python"),
                    str(ROOT / "scripts" / "compare_versions.py"),
                    live,
                    "technoshare-test",
                    "--mlflow",
                    mlflow_server,
                    "--prometheus",
                    prometheus,
                    "--window",
                    "10m",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
    assert len(queries) >= 12
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    mine, evaluated = figures[live], figures["technoshare-test"]
    assert 0 < mine["live_gate_pass_rate"] < 1  # a good reply, and a draft refused and answered by the fallback
    assert 0.5 < mine["live_grounding_mean"] <= 1 and mine["feedback_positive_ratio"] == 1.0
    assert mine["cost_per_job_usd"] > 0 and mine["p95_latency_seconds"] > 0 and mine["jobs"] == 4
    assert evaluated["eval_pass_rate"] == 1.0 and evaluated["live_gate_pass_rate"] is None  # the pushed eval only
    assert printed.returncode == 0, printed.stderr
    assert (
        f"| figure | {live} | technoshare-test |" in printed.stdout
        and "| feedback 👍 ratio | 100.0% | n/a |" in printed.stdout
    )


def _compared(client: MlflowClient, prometheus: str, live: str) -> dict[str, dict[str, object]] | None:
    figures = compare(client, prometheus, [live, "technoshare-test"], "10m")
    mine = figures[live]
    return figures if mine["jobs"] == 4 and mine["feedback_positive_ratio"] is not None else None


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
