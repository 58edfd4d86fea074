"""MLflow stops while jobs run: the jobs finish anyway, and every run, artifact and trace lands once it is back."""

import re
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.e2e.test_job_in_mlflow import _complete_trace
from tests.support.mlflow_server import MlflowServer
from tests.support.servers import wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

# The scripted model writes about LoRA: any other link is (rightly) refused by the content gates.
LINKS = ("https://arxiv.org/abs/2106.09685", "https://arxiv.org/pdf/2106.09685")


def backlog(metrics: str, kind: str) -> float:
    found = re.search(rf'technoshare_mlflow_spool_backlog\{{kind="{kind}"\}} ([0-9.]+)', metrics)
    return float(found.group(1)) if found else 0.0


def test_jobs_run_while_mlflow_is_down_land_in_it_when_it_is_back(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    env = {"MLFLOW_TRACKING_URI": server.url, "MLFLOW_SPOOL_DIR": str(tmp_path / "spool")}
    try:
        with Stack(tmp_path, env=env) as stack:
            for module in ("ingest", "composer", "retrieval", "llm_gateway", "poster"):
                log = tmp_path / f"{module}.log"
                wait_until(lambda log=log: "MLflow tracing on" in log.read_text(), timeout=60, what=f"{module} tracing")
            server.stop()

            jobs = []
            for link in LINKS:
                event = stack.message_event(f"<{link}>")
                assert stack.slack_request(event).status_code == 200
                [job] = stack.wait_jobs_done(event["event"]["ts"], 1, timeout=90)
                assert job["outcome"] == "success", job
                jobs.append(job)
            assert len(stack.slack.messages) == 2
            composer_metrics = httpx.get(f"{stack.services['composer'].url}/metrics").text
            ingest_metrics = httpx.get(f"{stack.ingest_url}/metrics").text
            assert backlog(composer_metrics, "job_run") == 2
            assert backlog(ingest_metrics, "trace") >= 2  # at least each job's root trace

            server.start()
            client = MlflowClient(server.url)
            for job in jobs:
                run = wait_until(lambda job=job: _logged_run(client, job["id"]), timeout=120, what="the spooled run")
                assert len(client.list_artifacts(run.info.run_id)) == 7  # slack_message.txt among them
                assert (
                    len(client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"))
                    == 5
                )
                trace_id = run.data.tags["trace_id"]
                wait_until(
                    lambda trace_id=trace_id: _complete_trace(client, trace_id), timeout=120, what="the spooled trace"
                )
                # The trace's tags and its link to the run are follow-up records: they land after its spans.
                wait_until(
                    lambda trace_id=trace_id, job=job: client.get_trace(trace_id).info.tags.get("job_id") == job["id"],
                    timeout=120,
                    what="the trace tagged with its job",
                )
                wait_until(
                    lambda trace_id=trace_id, run=run: (
                        client.get_trace(trace_id).info.tags.get("run_id") == run.info.run_id
                    ),
                    timeout=120,
                    what="the trace linked to its run",
                )
            for service in ("ingest", "composer"):
                log = (tmp_path / f"{service}.log").read_text()
                assert "MLflow is unavailable" in log and "MLflow is back" in log, service
    finally:
        server.stop()


def _logged_run(client: MlflowClient, job_id: str):  # type: ignore[no-untyped-def]
    experiment = client.get_experiment_by_name("technoshare_commentator")
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.job_id = '{job_id}' and tags.`technoshare.logged` = 'true'"
    )
    return runs[0] if runs else None
