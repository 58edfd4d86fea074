"""With a judge model, a sampled share of posted replies is scored afterwards: LLM_JUDGE assessments on the trace,
the call billed to llm-gateway's persona eval_judge, and the reply never waits for it."""

from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.e2e.test_job_in_mlflow import ARXIV
from tests.support.mlflow_jobs import job_trace
from tests.support.servers import wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def test_a_posted_reply_is_scored_by_the_judge_on_its_trace(tmp_path: Path, mlflow_server: str) -> None:
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_SPOOL_DIR": str(tmp_path / "spool"),
        "JUDGE_MODEL": "scripted-judge",  # the scripted upstream answers the verdicts: every claim entailed
        "JUDGE_SAMPLE_RATE": "0",  # the judge on the reply's path stays off: only the online one runs
        "ONLINE_JUDGE_SAMPLE_RATE": "1",
    }
    with Stack(tmp_path, env=env) as stack:
        event = stack.message_event(f"<{ARXIV}>")
        assert stack.slack_request(event).status_code == 200
        [job] = stack.wait_jobs_done(event["event"]["ts"], 1)
        assert job["outcome"] == "success", job
        client = MlflowClient(mlflow_server)

        def judged():  # type: ignore[no-untyped-def]
            trace = job_trace(client, job["id"])
            if trace is None:
                return None
            found = {a.name: a for a in trace.info.assessments if a.source.source_type == "LLM_JUDGE"}
            return found if {"judge_entailment", "judge_contradicted"} <= set(found) else None

        scores = wait_until(judged, timeout=90, interval=0.5, what="the judge's assessments")
        gateway_metrics = httpx.get(f"{stack.services['llm_gateway'].url}/metrics").text
    assert scores["judge_entailment"].value == 1.0 and scores["judge_contradicted"].value == 0.0
    assert scores["judge_entailment"].source.source_id == "scripted-judge"
    assert 'persona="eval_judge"' in gateway_metrics  # billed apart, under its own budget
    assert 'persona="entailment_judge"' not in gateway_metrics
