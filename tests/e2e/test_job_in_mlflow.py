"""A Slack link through the five services leaves its run in a real MLflow server."""

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.support.servers import wait_until
from tests.support.stack import CHANNEL, Stack

pytestmark = pytest.mark.e2e

ARXIV = "https://arxiv.org/abs/2106.09685"


def test_a_job_leaves_one_run_with_its_stages_in_mlflow(tmp_path: Path, mlflow_server: str) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_SPOOL_DIR": str(tmp_path / "spool")}
    with Stack(tmp_path, env=env) as stack:
        event = stack.message_event(f"<{ARXIV}>")
        assert stack.slack_request(event).status_code == 200
        [job] = stack.wait_jobs_done(event["event"]["ts"], 1)
        assert job["outcome"] == "success", job
        client = MlflowClient(mlflow_server)

        def job_run():  # type: ignore[no-untyped-def]
            experiment = client.get_experiment_by_name("technoshare_commentator")
            if experiment is None:
                return None
            runs = client.search_runs(
                [experiment.experiment_id], f"tags.job_id = '{job['id']}' and tags.outcome = 'success'"
            )
            return (experiment.experiment_id, runs[0]) if runs else None

        experiment_id, run = wait_until(job_run, timeout=60, interval=0.5, what="the job's MLflow run")
    assert run.data.tags["channel_id"] == CHANNEL
    assert run.data.tags["domain"] == "arxiv.org" and run.data.tags["adapter_name"] == "ArxivAdapter"
    assert run.data.tags["prompt_version.stage_a_extract_facts"]
    assert run.data.params["gate.tldr_sentences"] == "3"
    assert run.data.metrics["gate_failures"] == 0 and run.data.metrics["total_tokens"] > 0
    assert len(client.list_artifacts(run.info.run_id)) == 6
    stages = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {child.data.tags["stage"] for child in stages} == {
        "retrieval",
        "stage_a",
        "stage_b",
        "quality_gates",
        "slack_post",
    }
