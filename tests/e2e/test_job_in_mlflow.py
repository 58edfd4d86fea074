"""A Slack link through the five services leaves its run in a real MLflow server."""

import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.support.servers import wait_until
from tests.support.stack import CHANNEL, Stack

pytestmark = pytest.mark.e2e

ARXIV = "https://arxiv.org/abs/2106.09685"


def test_a_job_leaves_one_run_with_its_stages_in_mlflow(tmp_path: Path, mlflow_server: str) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_SPOOL_DIR": str(tmp_path / "spool")}
    with Stack(tmp_path, env=env) as stack:
        for module in ("ingest", "composer", "retrieval", "llm_gateway", "poster"):
            log = tmp_path / f"{module}.log"
            wait_until(lambda log=log: "MLflow tracing on" in log.read_text(), timeout=60, what=f"{module} tracing")
        event = stack.message_event(f"<{ARXIV}> use-search")  # the scripted Stage A calls its search tool once
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

        # Reactions on the bot's reply are feedback on the job's trace; others are ignored.
        reply_ts = job["slack_message_ts"]
        for name in ("+1::skin-tone-2", "eyes"):
            assert stack.slack_request(reaction_event(reply_ts, name)).status_code == 200
        assert stack.slack_request(reaction_event("999.000", "-1")).status_code == 200  # not our reply
        feedback = wait_until(
            lambda: [
                a for a in client.get_trace(run.data.tags["trace_id"]).info.assessments if a.name == "user_reaction"
            ],
            timeout=30,
            interval=0.5,
            what="the reaction as feedback",
        )
        # Live scoring: the posted reply's gate verdicts and measures, as CODE assessments on the trace.
        scored = wait_until(
            lambda: _code_assessments(client, run.data.tags["trace_id"]), timeout=60, interval=0.5, what="live scores"
        )
        metrics = httpx.get(f"{stack.ingest_url}/metrics").text
        composer_metrics = httpx.get(f"{stack.services['composer'].url}/metrics").text
        # The evidence composer worked from, as checkpointed on the job: what the retrieval span must count.
        view = httpx.get(
            f"{stack.ingest_url}/v1/jobs/{job['id']}", headers={"authorization": f"Bearer {stack.token}"}, timeout=10
        ).json()
    snippets = view["checkpoints"]["evidence"]["snippets"]
    assert run.data.tags["channel_id"] == CHANNEL
    assert run.data.tags["domain"] == "arxiv.org" and run.data.tags["adapter_name"] == "ArxivAdapter"
    assert run.data.tags["prompt_version.stage_a_extract_facts"]
    assert run.data.params["gate.tldr_sentences"] == "3"
    assert run.data.metrics["gate_failures"] == 0 and run.data.metrics["total_tokens"] > 0
    assert len(client.list_artifacts(run.info.run_id)) == 7
    trace_id = run.data.tags["trace_id"]
    trace = wait_until(lambda: _complete_trace(client, trace_id), timeout=60, interval=0.5, what="the whole trace")
    spans = {span.name: span for span in trace.data.spans}
    [root] = [span for span in trace.data.spans if span.parent_id is None]
    assert root.name == "ingest.dispatch_job"
    assert spans["composer.run_job"].attributes["job_id"] == job["id"]
    retrieval = spans["retrieval.fetch_evidence"]
    assert retrieval.span_type == "RETRIEVER" and retrieval.attributes["adapter"] == "ArxivAdapter"
    assert retrieval.attributes["coverage"] == view["checkpoints"]["evidence"]["coverage"]
    assert retrieval.attributes["snippet_count"] == len(snippets) > 0
    assert spans["stage_a.run"].span_type == "LLM" and spans["stage_a.run"].attributes["tool_calls"] == 1
    search = spans["search_tool_call"]
    assert search.span_type == "TOOL" and search.attributes["content_length"] > 0
    assert search.attributes["url"].startswith("https://arxiv.org/abs/")
    assert spans["stage_b.run"].attributes["prompt_length"] > 1000
    assert spans["quality_gates.validate"].attributes["gate_pass_rate"] == 1.0
    assert "slack.post_message" in spans and "poster POST /v1/replies" in spans
    assert "retrieval POST /v1/evidence" in spans
    llm_spans = [span for span in trace.data.spans if span.name == "llm_gateway.chat_completion"]
    assert len(llm_spans) >= 2 and all(span.span_type == "LLM" for span in llm_spans)
    assert {span.attributes["persona"] for span in llm_spans} == {"stage_a", "stage_b"}
    assert trace.info.token_usage["total_tokens"] == run.data.metrics["total_tokens"]
    wait_until(  # a follow-up record: it may land after the spans
        lambda: client.get_trace(trace_id).info.tags.get("job_id") == job["id"], timeout=60, what="the trace's job tag"
    )
    # The job ran as an app version: a LoggedModel holding its configuration, linked from run and trace.
    model = client.get_logged_model(run.data.tags["app_version_id"])
    assert model.name == run.data.tags["app_version"]
    assert model.params["prompt.stage_a_extract_facts"] == run.data.tags["prompt_version.stage_a_extract_facts"]
    assert model.params["model.stage_b"] == "scripted" and model.params["gate.tldr_sentences"] == "3"
    assert [i.model_id for i in client.get_run(run.info.run_id).inputs.model_inputs] == [model.model_id]
    linked = wait_until(
        lambda: client.get_trace(trace_id).info.tags.get("app_version_id"), timeout=30, what="trace link"
    )
    assert linked == model.model_id
    assert scored["gates_passed"] is True and scored["gate.grounded"] is True
    assert 0.5 <= scored["grounding_min"] <= scored["grounding_mean"] <= 1.0 and scored["unsupported_sentences"] == 0
    assert scored["theme_strength"] >= 0.11  # the first project line's theme is earned (GATE_MIN_THEME_STRENGTH)
    version = run.data.tags["app_version"]
    live = f'app_version="{version}",channel="{CHANNEL}"'
    assert f'technoshare_live_replies_total{{{live},passed="true"}} 1.0' in composer_metrics
    assert f"technoshare_live_grounding_count{{{live}}} 1.0" in composer_metrics
    [positive] = feedback
    assert positive.value is True and positive.source.source_type == "HUMAN"
    assert 'technoshare_feedback_total{reaction="+1",verdict="positive"} 1.0' in metrics
    assert f'technoshare_live_feedback_total{{{live},verdict="positive"}} 1.0' in metrics  # by version and channel
    assert f'technoshare_live_feedback_total{{{live},verdict="negative"}} 0.0' in metrics
    stages = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {child.data.tags["stage"] for child in stages} == {
        "retrieval",
        "stage_a",
        "stage_b",
        "quality_gates",
        "slack_post",
    }


def reaction_event(message_ts: str, reaction: str) -> dict:  # type: ignore[type-arg]
    return {
        "type": "event_callback",
        "event_id": f"Ev{time.time_ns()}",
        "event": {
            "type": "reaction_added",
            "user": "U0HUMAN",
            "reaction": reaction,
            "item": {"type": "message", "channel": CHANNEL, "ts": message_ts},
            "item_user": "U0BOT",
            "event_ts": f"{time.time():.6f}",
        },
    }


def _code_assessments(client: MlflowClient, trace_id: str) -> dict[str, object] | None:
    """The trace's CODE assessments by name, once the last of them (theme_strength) has landed."""
    found = {a.name: a.value for a in client.get_trace(trace_id).info.assessments if a.source.source_type == "CODE"}
    return found if "theme_strength" in found else None


def _complete_trace(client: MlflowClient, trace_id: str):  # type: ignore[no-untyped-def]
    """Each service sends its spans on its own; wait until the last service's have landed."""
    try:
        trace = client.get_trace(trace_id)
    except Exception:
        return None
    names = {span.name for span in trace.data.spans}
    wanted = {"ingest.dispatch_job", "composer.run_job", "llm_gateway.chat_completion", "poster POST /v1/replies"}
    return trace if wanted <= names else None
