"""The shadow canary end to end: technoshare-canary against a real MLflow server holding a live job's run, through
llm-gateway in front of the scripted upstream. @staging that breaks the gates fails it and @prod stays; a good
@staging passes it, is promoted to @prod, and the passing canary is what --require-canary looks for."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from composer.prompts import PromptRegistry
from composer.tracking import JobTracker
from evaluation.canary import CANARY_EXPERIMENT, last_canary_passed
from tests.integration.test_evaluation import STAGE_B, gateway_url, register  # noqa: F401  (gateway_url: a fixture)
from tests.support.jobs import arxiv_job
from tests.support.mlflow_server import MlflowServer
from tests.support.servers import wait_until

pytestmark = pytest.mark.mlflow


def canary(tracking_uri: str, gateway: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "LLM_GATEWAY_URL": gateway,
        "STAGE_A_MODEL": "scripted",
        "STAGE_B_MODEL": "scripted",
    }
    command = [str(Path(sys.executable).parent / "technoshare-canary"), "--links", "5", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_a_staging_that_breaks_the_gates_fails_the_canary_and_a_good_one_is_promoted(
    tmp_path: Path,
    gateway_url: str,  # noqa: F811
) -> None:
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    try:
        tracker = JobTracker(server.url, tmp_path / "spool")  # a live job's run, as composer logs it
        tracker.start()
        tracker.submit(*arxiv_job("canarylive1"), {"compose_mode": "abstractive"})
        wait_until(lambda: tracker.backlog() == 0, timeout=120, what="the live job's run")
        tracker.stop()
        registry = PromptRegistry(server.url)
        prod = register(registry, "prod")
        register(registry, "staging", "Keep every sentence short. break-the-gates")

        failed = canary(server.url, gateway_url, "--promote")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "FAIL: gate_pass_rate 0.000 vs 1.000" in failed.stdout
        assert registry.alias_version(STAGE_B, "prod") == prod[STAGE_B]

        good = register(registry, "staging", "Keep every sentence short.")
        passed = canary(server.url, gateway_url, "--promote")
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert f"promoted {STAGE_B}: @prod -> version {good[STAGE_B]}" in passed.stdout
        assert registry.alias_version(STAGE_B, "prod") == good[STAGE_B]

        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name(CANARY_EXPERIMENT)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
        assert [run.data.tags["passed"] for run in runs] == ["false", "true"]
        last = runs[-1]
        assert last.data.metrics["links"] == 1.0 and last.data.metrics["candidate_gate_pass_rate"] == 1.0
        assert (
            last.data.metrics["baseline_gate_pass_rate"] == 1.0 and last.data.metrics["candidate_grounding_mean"] > 0.5
        )
        linked = {model.model_id for model in client.get_run(last.info.run_id).inputs.model_inputs}
        assert len(linked) == 2  # both app versions: the two aliases differ in stage B's prompt
        version = last.data.tags["candidate_app_version"]
        assert last_canary_passed(client, version)
        assert not last_canary_passed(client, runs[0].data.tags["candidate_app_version"])
    finally:
        server.stop()
