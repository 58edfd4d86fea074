"""Each job's MLflow run against a real MLflow server: what it holds, the filters operators use, the spool."""

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from composer.tracking import EXPERIMENT, JobTracker
from technoshare_common.schemas import (
    Outcome,
)
from tests.support.jobs import TIMINGS, arxiv_job
from tests.support.mlflow_server import MlflowServer
from tests.support.servers import free_port, wait_until

PARAMS = {"gate.tldr_sentences": 3, "stage_b.temperature": 0.2, "stage_b.max_tokens": 900}


def test_a_job_leaves_its_run_nested_runs_and_artifacts(mlflow_server: str, tmp_path: Path) -> None:
    tracker = JobTracker(mlflow_server, tmp_path / "spool")
    tracker.start()
    try:
        for job_id, outcome in (("job-t1-ok", Outcome.success), ("job-t1-gates", Outcome.gate_failed)):
            tracker.submit(*arxiv_job(job_id, outcome), PARAMS)
        wait_until(lambda: tracker.backlog() == 0, timeout=60, what="the spool to drain")
    finally:
        tracker.stop()
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    ids = [experiment.experiment_id]

    [run] = client.search_runs(ids, "tags.job_id = 'job-t1-ok' and tags.outcome = 'success'")
    assert run.data.tags["domain"] == "arxiv.org"
    assert run.data.tags["adapter_name"] == "ArxivAdapter"
    assert run.data.tags["coverage"] == "metadata_only"
    assert run.data.tags["channel_id"] == "C1" and run.data.tags["message_ts"] == "1.2"
    assert run.data.tags["stage_a_model"] == "gpt-4o-mini"
    assert run.data.tags["prompt_version.stage_b_compose_reply"] == "5"
    assert run.data.params["stage_b.temperature"] == "0.2"
    assert run.data.metrics["latency_seconds_stage_b"] == 2.1
    assert run.data.metrics["tool_call_count"] == 1 and run.data.metrics["source_count"] == 1
    assert run.data.metrics["gate_failures"] == 0 and run.data.metrics["gate_passed"] == 2
    assert run.data.metrics["cost_usd"] == pytest.approx(0.00082)
    assert run.data.metrics["total_tokens"] == 2320
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert artifacts == {
        "evidence.json",
        "stage_a_facts.json",
        "stage_b_result.json",
        "slack_payload.json",
        "gate_failures.txt",
        "sources.txt",
        "slack_message.txt",  # redacted: what a vote freezes into a regression case with the reply
    }
    evidence = json.loads(Path(client.download_artifacts(run.info.run_id, "evidence.json", str(tmp_path))).read_text())
    assert evidence["adapter_name"] == "ArxivAdapter"
    nested = client.search_runs(ids, f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {child.data.tags["stage"]: child.data.metrics["latency_seconds"] for child in nested} == {
        stage: TIMINGS[stage] for stage in ("retrieval", "stage_a", "stage_b", "quality_gates", "slack_post")
    }

    # The filters operators use (the server is shared with other tests: look at this test's jobs).
    mine = "tags.job_id LIKE 'job-t1-%'"
    assert [r.data.tags["job_id"] for r in client.search_runs(ids, f"{mine} and metrics.gate_failures > 0")] == [
        "job-t1-gates"
    ]
    arxiv = client.search_runs(ids, f"{mine} and tags.domain = 'arxiv.org' and tags.adapter_name = 'ArxivAdapter'")
    assert len(arxiv) == 2
    [failed] = client.search_runs(ids, "tags.job_id = 'job-t1-gates' and tags.outcome = 'gate_failed'")
    gate_failures = client.download_artifacts(failed.info.run_id, "gate_failures.txt", str(tmp_path / "g"))
    assert "slack_formatting" in Path(gate_failures).read_text()


@pytest.mark.mlflow
def test_runs_wait_in_the_spool_while_mlflow_is_down_and_land_when_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    tracker = JobTracker(f"http://127.0.0.1:{port}", tmp_path / "spool")
    tracker.start()
    server = MlflowServer(tmp_path / "mlflow", port)
    try:
        start = time.perf_counter()
        for index in range(3):
            tracker.submit(*arxiv_job(f"job-down-{index}"), PARAMS)
        per_job = (time.perf_counter() - start) / 3
        assert per_job < 0.05
        time.sleep(1)
        assert tracker.backlog() == 3
        server.start()
        tracker.spool.wake()
        wait_until(lambda: tracker.backlog() == 0, timeout=120, what="the spool to drain")
        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id], "tags.job_id LIKE 'job-down-%' and tags.outcome != ''")
        assert sorted(run.data.tags["job_id"] for run in runs) == ["job-down-0", "job-down-1", "job-down-2"]
        assert all(len(client.list_artifacts(run.info.run_id)) == 7 for run in runs)
    finally:
        tracker.stop()
        server.stop()


def test_a_replayed_spool_file_does_not_log_the_job_twice(mlflow_server: str, tmp_path: Path) -> None:
    tracker = JobTracker(mlflow_server, tmp_path / "spool")
    job, result = arxiv_job("job-replayed")
    record = {"job": job.model_dump(mode="json"), "result": result.model_dump(mode="json"), "params": PARAMS}
    record["finished_at"] = time.time()
    tracker._log(record)
    tracker._log(record)  # as after a crash between logging and deleting the spool file
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.job_id = 'job-replayed'")
    assert len([run for run in runs if "stage" not in run.data.tags]) == 1


def test_tracking_disabled_is_a_no_op(tmp_path: Path) -> None:
    tracker = JobTracker("http://127.0.0.1:1", tmp_path / "spool", enabled=False)
    tracker.start()
    tracker.submit(*arxiv_job("job-off"), PARAMS)
    assert not (tmp_path / "spool").exists()
