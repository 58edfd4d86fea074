"""Secrets and addresses pasted in Slack never reach MLflow, and a job's trace knows its thread and a pseudonym."""

import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.e2e.test_job_in_mlflow import ARXIV, reaction_event
from tests.support.mlflow_server import MlflowServer
from tests.support.servers import wait_until
from tests.support.stack import CHANNEL, Stack

pytestmark = pytest.mark.e2e

# Made-up values of the shapes technoshare_common.redaction knows, as a user might paste them.
PLANTED = (
    "xoxb-2712345678901-2723456789012-AbCdEfGhIjKlMnOpQrStUvWx",
    "AKIAIOSFODNN7EXAMPLE",
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "jane.doe@example.com",
)
SLACK_USER = "U0HUMAN"  # the sender and the reacting user of Stack's events


def mlflow_texts(workdir: Path) -> str:
    """Everything MLflow stored: its database, dumped, and every artifact file."""
    with sqlite3.connect(workdir / "mlflow.db") as db:
        dumped = "\n".join(db.iterdump())
    files = (p.read_bytes().decode("utf-8", "replace") for p in (workdir / "mlartifacts").rglob("*") if p.is_file())
    return dumped + "\n".join(files)


def test_secrets_in_a_slack_message_never_reach_mlflow(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    try:
        env = {"MLFLOW_TRACKING_URI": server.url, "MLFLOW_SPOOL_DIR": str(tmp_path / "spool")}
        with Stack(tmp_path, env=env) as stack:
            for module in ("ingest", "composer", "retrieval", "llm_gateway", "poster"):
                log = tmp_path / f"{module}.log"
                wait_until(lambda log=log: "MLflow tracing on" in log.read_text(), timeout=60, what=f"{module} tracing")
            # use-search: the scripted Stage A calls its tool, so the message also travels through a tool span.
            # One per line: prompts, spans and artifacts hold the text serialised, where a newline is `\n`.
            event = stack.message_event(f"<{ARXIV}> use-search, creds for the demo:\n" + "\n".join(PLANTED))
            assert stack.slack_request(event).status_code == 200
            [job] = stack.wait_jobs_done(event["event"]["ts"], 1)
            assert job["outcome"] == "success", job
            client = MlflowClient(server.url)
            assert stack.slack_request(reaction_event(job["slack_message_ts"], "+1")).status_code == 200

            def finished_trace():  # type: ignore[no-untyped-def]
                experiment = client.get_experiment_by_name("technoshare_commentator")
                if experiment is None:
                    return None
                found = client.search_traces(
                    locations=[experiment.experiment_id], filter_string=f"tag.job_id = '{job['id']}'"
                )
                if not found:
                    return None
                trace = client.get_trace(found[0].info.trace_id)
                names = {span.name for span in trace.data.spans}
                wanted = {
                    "composer.run_job",
                    "llm_gateway.chat_completion",
                    "search_tool_call",
                    "poster POST /v1/replies",
                }
                reacted = any(a.name == "user_reaction" for a in trace.info.assessments)
                return trace if wanted <= names and reacted else None

            trace = wait_until(finished_trace, timeout=90, interval=0.5, what="the job's whole trace and its feedback")
            # The gateway's per-call runs carry the prompt as a parameter: wait for Stage A's.
            wait_until(
                lambda: "use-search" in mlflow_texts(server.workdir), timeout=60, interval=0.5, what="the call runs"
            )
        stored = mlflow_texts(server.workdir)
    finally:
        server.stop()
    leaked = [secret for secret in (*PLANTED, SLACK_USER) if secret in stored]
    assert leaked == []
    assert "[redacted slack_token]" in stored and "[redacted email]" in stored  # the message did reach MLflow
    metadata = trace.info.trace_metadata
    assert metadata["mlflow.trace.session"] == f"{CHANNEL}:{event['event']['ts']}"
    user = metadata["mlflow.trace.user"]
    assert len(user) == 20 and user != SLACK_USER
    [reaction] = [a for a in trace.info.assessments if a.name == "user_reaction"]
    assert reaction.source.source_id == user  # the same person, known by the same pseudonym
