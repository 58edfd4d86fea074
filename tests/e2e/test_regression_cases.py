"""A reply voted down in Slack becomes a frozen regression case: in MLflow's evaluation dataset, then in the
repository's format, with the evidence it was made from and nothing personal."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from composer.prompts import PromptRegistry
from evaluation.regressions import DATASET_NAME, load_regression_cases
from tests.e2e.test_job_in_mlflow import ARXIV, reaction_event
from tests.integration.test_evaluation import STAGE_B, register
from tests.support.mlflow_jobs import job_trace
from tests.support.mlflow_server import MlflowServer
from tests.support.servers import ROOT, wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def sync(tracking_uri: str, output: Path) -> str:
    done = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "technoshare-sync-regressions"),
            "--tracking-uri",
            tracking_uri,
            "--output",
            output,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def evaluate(
    stack: Stack, tracking_uri: str, cases: Path, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """technoshare-eval through the stack's llm-gateway (with the stack's token), with the regression cases."""
    env = os.environ | {
        "TECHNOSHARE_INTERNAL_TOKEN": stack.token,
        "LLM_GATEWAY_URL": stack.services["llm_gateway"].url,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "STAGE_A_MODEL": "scripted",
        "STAGE_B_MODEL": "scripted",
    }
    command = [str(ROOT / ".venv" / "bin" / "technoshare-eval"), "--regressions", str(cases)]
    command += ["--output", str(tmp_path / "eval_results.json"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_a_reply_voted_down_becomes_a_regression_case_and_the_last_vote_wins(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    output = tmp_path / "regression_cases.json"
    try:
        env = {"MLFLOW_TRACKING_URI": server.url, "MLFLOW_SPOOL_DIR": str(tmp_path / "spool")}
        with Stack(tmp_path, env=env) as stack:
            event = stack.message_event(f"<{ARXIV}> worth a look for Forge, ask jane.doe@example.com")
            assert stack.slack_request(event).status_code == 200
            [job] = stack.wait_jobs_done(event["event"]["ts"], 1)
            assert job["outcome"] == "success", job
            [posted] = stack.slack.messages
            client = MlflowClient(server.url)

            def votes() -> list[object] | None:
                """The reply's votes on its trace, once the trace is linked to the job's run."""
                trace = job_trace(client, job["id"])
                if trace is None or "run_id" not in trace.info.tags:
                    return None
                return [a.value for a in trace.info.assessments if a.name == "user_reaction"]

            assert stack.slack_request(reaction_event(job["slack_message_ts"], "-1")).status_code == 200
            wait_until(lambda: votes() == [False], timeout=90, interval=0.5, what="the thumbs-down on a linked trace")
            assert "1 regression cases (1 voted down)" in sync(server.url, output)
            [case] = load_regression_cases(output)
            # A person triages it: the theme a good reply names, and the gates must refuse this reply.
            triaged = json.loads(output.read_text())
            triaged["cases"][0] |= {"expected_theme": "Model training and fine-tuning", "confirmed": True}
            output.write_text(json.dumps(triaged))

            # The same person changes their mind: the case is updated, not doubled.
            assert stack.slack_request(reaction_event(job["slack_message_ts"], "+1")).status_code == 200
            wait_until(lambda: votes() == [False, True], timeout=60, interval=0.5, what="the thumbs-up")
            assert "1 regression cases (0 voted down)" in sync(server.url, output)
            [again] = load_regression_cases(output)
            dataset_records = _dataset_records(server.url)

            # A candidate that fails the case where @prod passes is refused, whatever the tolerance allows.
            registry = PromptRegistry(server.url)
            prod = register(registry, "prod")
            register(registry, "candidate", "break-the-gates")
            promote = [*("--alias", "candidate", "--promote", "--tolerance", "1", "--limit", "1")]
            refused = evaluate(stack, server.url, output, tmp_path, *promote)
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert f"newly failing: ['arxiv-2106-09685', '{case.id}']" in refused.stdout
            assert "regressed against @prod" in refused.stdout and "not promoting @candidate" in refused.stdout
            assert registry.alias_version(STAGE_B, "prod") == prod[STAGE_B]
    finally:
        server.stop()
    assert case.label == "bad" and again.label == "good" and again.id == case.id == f"regression-{job['id'][:16]}"
    assert again.expected_theme == "Model training and fine-tuning"  # a person's theme outlives a sync
    assert not case.confirmed and not again.confirmed  # a triage holds only while the vote it judged stands
    assert str(case.evidence.url) == ARXIV and case.evidence.snippets  # pinned: what the reply was made from
    assert case.reply["tldr"] and case.reply["tldr"][0] in posted["text"]  # the reply as it was posted
    assert "worth a look for Forge" in case.slack_text and "[redacted email]" in case.slack_text
    stored = output.read_text()
    assert "U0HUMAN" not in stored and "jane.doe@example.com" not in stored
    example, recorded = case.example(), case.recorded()
    assert example.split == "regression" and recorded.label == "bad" and recorded.example_id == case.id
    assert len(json.loads(stored)["cases"]) == 1
    assert len(dataset_records) == 1  # one record per job in MLflow's evaluation dataset, updated by the new vote


def _dataset_records(tracking_uri: str) -> list[dict[str, object]]:
    """The dataset's records, read in a child process (setting the tracking URI here would leak into other tests)."""
    code = (
        "import json, mlflow; from mlflow.genai import datasets; "
        f"mlflow.set_tracking_uri({tracking_uri!r}); "
        f"print(json.dumps(datasets.get_dataset(name={DATASET_NAME!r}).to_df()['expectations'].tolist()))"
    )
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
