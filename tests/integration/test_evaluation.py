"""The evaluation suite end to end: the technoshare-eval console script against a real MLflow server (prompt
registry, mlflow.genai.evaluate, experiment technoshare_eval, app versions), with llm-gateway in front of a scripted
OpenAI-protocol upstream. A candidate prompt that breaks the gates is refused; one that does not is promoted; a
recorded bad reply the gates accept fails the run.
"""

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from composer.prompts import PromptRegistry, load_local_prompts
from composer.quality.gates import GATE_NAMES
from llm_gateway.main import build_app
from llm_gateway.settings import GatewaySettings
from technoshare_common.settings import REPO_DATA_DIR
from tests.support.scripted_llm import ScriptedLLM, recorded_good_replies
from tests.support.servers import ROOT, ServiceProcess, free_port, serve_in_thread, wait_until

STAGE_B = "stage_b_compose_reply"
# Examples whose recorded good reply (data/eval_replies.json) every gate accepts: the scripted upstream answers
# Stage B with it, so the prompts at @prod pass them all.
EXAMPLE_IDS = ("arxiv-2106-09685", "arxiv-2305-14314", "arxiv-2006-11239")
EXAMPLES = len(EXAMPLE_IDS)
RECORDED = json.loads((REPO_DATA_DIR / "eval_replies.json").read_text())["entries"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real dataset with EXAMPLE_IDS first, which --limit then picks (every example stays, for the recorded
    replies of the others)."""
    data = json.loads((REPO_DATA_DIR / "eval_dataset.json").read_text())
    data["examples"].sort(key=lambda example: example["id"] not in EXAMPLE_IDS)
    assert [example["id"] for example in data["examples"][:EXAMPLES]] == list(EXAMPLE_IDS)
    path = tmp_path_factory.mktemp("dataset") / "eval_dataset.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_in_thread(ScriptedLLM(replies=recorded_good_replies(EXAMPLE_IDS)).app) as upstream:
        spend = tmp_path_factory.mktemp("spend") / "spend.db"
        settings = GatewaySettings(
            LLM_UPSTREAM_BASE_URL=f"{upstream}/v1",
            OPENAI_API_KEY="sk-upstream",
            LLM_SPEND_DATABASE_URL=f"sqlite:///{spend}",  # type: ignore[arg-type]
        )
        with serve_in_thread(build_app(settings)) as url:
            yield url


def run_eval(
    mlflow_server: str, gateway_url: str, tmp_path: Path, dataset: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = (
        os.environ
        | (env or {})
        | {
            "MLFLOW_TRACKING_URI": mlflow_server,
            "LLM_GATEWAY_URL": gateway_url,
            "STAGE_A_MODEL": "scripted",
            "STAGE_B_MODEL": "scripted",
        }
    )
    command = [str(Path(sys.executable).parent / "technoshare-eval"), "--limit", str(EXAMPLES)]
    command += ["--dataset", str(dataset), "--output", str(tmp_path / "eval_results.json"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def register(registry: PromptRegistry, alias: str, extra_system: str = "") -> dict[str, str]:
    """The YAML prompts (stage B's system message extended) registered, and `alias` pointed at them."""
    versions = {}
    for name, prompt in load_local_prompts(REPO_DATA_DIR / "prompts").items():
        if name == STAGE_B and extra_system:
            prompt = dataclasses.replace(prompt, system=f"{prompt.system}\n{extra_system}")
        version, _ = registry.sync(prompt, f"test: {alias}")
        registry.set_alias(name, alias, int(version))
        versions[name] = version
    return versions


def test_a_regressing_candidate_is_refused_and_a_good_one_is_promoted(
    mlflow_server: str, gateway_url: str, dataset: Path, tmp_path: Path
) -> None:
    registry = PromptRegistry(mlflow_server)
    prod = register(registry, "prod")
    register(registry, "candidate", "Keep every sentence short. break-the-gates")

    refused = run_eval(mlflow_server, gateway_url, tmp_path, dataset, "--alias", "candidate", "--promote")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "FAIL" in refused.stdout and "regressed" in refused.stdout and "not promoting" in refused.stdout
    assert registry.alias_version(STAGE_B, "prod") == prod[STAGE_B]
    document = json.loads((tmp_path / "eval_results.json").read_text())
    assert document["alias"] == "candidate" and document["overall_pass_rate"] == 0.0
    assert document["structural_pass_rate"] == 0.0 and document["pass_rates"]["slack_formatting"] == 0.0
    assert document["comparison"]["baseline_pass_rate"] == 1.0 and document["comparison"]["regressed"]
    assert len(document["comparison"]["regressed_examples"]) == EXAMPLES
    failing = document["examples"][0]
    assert failing["scores"]["slack_formatting"] == 0.0 and "bold" in failing["rationales"]["slack_formatting"]

    good = register(registry, "candidate", "Keep every sentence short.")
    promoted = run_eval(mlflow_server, gateway_url, tmp_path, dataset, "--alias", "candidate", "--promote")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"promoted {STAGE_B}: @prod -> version {good[STAGE_B]}" in promoted.stdout
    assert registry.alias_version(STAGE_B, "prod") == good[STAGE_B]

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("technoshare_eval")
    assert experiment is not None
    [run] = client.search_runs(
        [experiment.experiment_id],
        f"tags.prompt_alias = 'candidate' and tags.`prompt_version.{STAGE_B}` = '{good[STAGE_B]}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    metrics = run.data.metrics
    assert metrics["overall_pass_rate"] == 1.0 and metrics["total_examples"] == EXAMPLES
    assert metrics["passed_examples"] == EXAMPLES and metrics["failed_examples"] == 0
    assert metrics["pass_rate_delta"] == 0.0 and run.data.tags["regressed"] == "false"
    # Every gate, the content gates with the structural ones, and relevance, each with its pass rate.
    assert metrics["gates_pass_rate"] == 1.0 and metrics["structural_pass_rate"] == 1.0
    assert {f"{name}_pass_rate" for name in (*GATE_NAMES, "relevance")} <= set(metrics)
    assert {metrics[f"{name}_pass_rate"] for name in (*GATE_NAMES, "relevance")} == {1.0}
    # Every sentence passed the grounded gate, so the mean support reaches its threshold (GATE_MIN_SUPPORT 0.5).
    first = EXAMPLE_IDS[0]
    assert 0.5 <= metrics[f"{first}_grounding"] <= 1.0 and 0.5 <= metrics["grounding_mean"] <= 1.0
    assert metrics[f"{first}_schema_validity"] == 1.0 and metrics[f"{first}_relevance"] == 1.0
    assert {metrics[f"{example_id}_pass_rate"] for example_id in EXAMPLE_IDS} == {1.0}
    bad = sum(entry["label"] == "bad" for entry in RECORDED)
    assert metrics["negatives_refused"] == 1.0 and metrics["negatives_total"] == bad
    assert {artifact.path for artifact in client.list_artifacts(run.info.run_id)} >= {"eval_results.json"}

    # The run and its traces link to the app version, a LoggedModel holding the configuration.
    model = client.get_logged_model(run.data.tags["app_version_id"])
    assert model.name == run.data.tags["app_version"]
    assert model.params[f"prompt.{STAGE_B}"] == good[STAGE_B] and model.params["model.stage_b"] == "scripted"
    traces = client.search_traces(locations=[experiment.experiment_id], model_id=model.model_id, max_results=50)
    assert len(traces) >= EXAMPLES


def test_a_candidate_goes_to_staging_and_to_prod_only_after_a_passing_canary(
    mlflow_server: str, gateway_url: str, dataset: Path, tmp_path: Path
) -> None:
    registry = PromptRegistry(mlflow_server)
    prod = register(registry, "prod")
    candidate = register(registry, "candidate", "Answer in plain words.")

    unvetted = run_eval(
        mlflow_server, gateway_url, tmp_path, dataset, "--alias", "candidate", "--promote", "--require-canary"
    )
    assert unvetted.returncode == 1, unvetted.stdout + unvetted.stderr
    assert "no passing shadow canary" in unvetted.stdout
    assert registry.alias_version(STAGE_B, "prod") == prod[STAGE_B]

    staged = run_eval(
        mlflow_server, gateway_url, tmp_path, dataset, "--alias", "candidate", "--promote", "--promote-to", "staging"
    )
    assert staged.returncode == 0, staged.stdout + staged.stderr
    assert registry.alias_version(STAGE_B, "staging") == candidate[STAGE_B]
    assert registry.alias_version(STAGE_B, "prod") == prod[STAGE_B]


def test_a_bad_dataset_is_a_clear_error(mlflow_server: str, gateway_url: str, dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"examples": [{"id": "x", "url": "https://example.com"}]}))
    result = run_eval(mlflow_server, gateway_url, tmp_path, dataset, "--dataset", str(broken))
    assert result.returncode == 2
    assert "is not a valid evaluation dataset" in result.stderr and "slack_text" in result.stderr


def test_a_recorded_bad_reply_the_gates_accept_fails_the_run(
    mlflow_server: str, gateway_url: str, dataset: Path, tmp_path: Path
) -> None:
    """A bad reply that no gate refuses fails the run like a regression, though every example passes."""
    register(PromptRegistry(mlflow_server), "prod")
    good = next(e for e in RECORDED if e["label"] == "good" and e["example_id"] == EXAMPLE_IDS[0])
    mislabelled = good | {"label": "bad", "fails": ["grounded"], "note": "the good reply, labelled bad"}
    replies = tmp_path / "eval_replies.json"
    replies.write_text(json.dumps({"entries": [*RECORDED, mislabelled]}))

    result = run_eval(mlflow_server, gateway_url, tmp_path, dataset, "--limit", "1", "--replies", str(replies))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL: the gates accept recorded bad replies" in result.stdout and EXAMPLE_IDS[0] in result.stdout
    document = json.loads((tmp_path / "eval_results.json").read_text())
    assert document["overall_pass_rate"] == 1.0
    negatives = document["negatives"]
    assert negatives["negatives_accepted"] == 1 and negatives["negatives_refused"] < 1.0
    assert [(e["example_id"], e["should_fail"]) for e in negatives["accepted_bad_replies"]] == [
        (EXAMPLE_IDS[0], ["grounded"])
    ]


def test_the_cronjob_mode_composes_through_composer_and_pushes_the_pass_rate(
    mlflow_server: str, gateway_url: str, dataset: Path, tmp_path: Path
) -> None:
    """What the chart's eval CronJob runs: composer's /v1/compose (dry run) and a real Pushgateway."""
    register(PromptRegistry(mlflow_server), "prod")
    tools = ROOT / ".cache" / "tools" / "prometheus" / "usr" / "bin"
    assert (tools / "prometheus-pushgateway").exists(), "run `make chart-check` (make test does)"
    pushgateway = f"127.0.0.1:{free_port()}"
    env = {
        "LLM_GATEWAY_URL": gateway_url,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MLFLOW_SPOOL_DIR": str(tmp_path / "spool"),
        "STAGE_A_MODEL": "scripted",
        "STAGE_B_MODEL": "scripted",
        "STAGE_A_TOOLS": "false",
        "TECHNOSHARE_INTERNAL_TOKEN": "eval-token",
        "RETRIEVAL_URL": "http://127.0.0.1:9",
        "POSTER_URL": "http://127.0.0.1:9",
    }
    composer = ServiceProcess("composer", free_port(), env, tmp_path)
    gateway_log = (tmp_path / "pushgateway.log").open("wb")
    gateway = subprocess.Popen(
        [str(tools / "prometheus-pushgateway"), f"--web.listen-address={pushgateway}"],
        stdout=gateway_log,
        stderr=subprocess.STDOUT,
    )
    composer.start(wait=False)
    try:
        wait_until(lambda: _answers(f"{composer.url}/healthz"), timeout=60, what="composer")
        result = run_eval(
            mlflow_server,
            gateway_url,
            tmp_path,
            dataset,
            "--composer-url",
            composer.url,
            "--pushgateway",
            pushgateway,
            env={"TECHNOSHARE_INTERNAL_TOKEN": "eval-token"},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        metrics = httpx.get(f"http://{pushgateway}/metrics", timeout=5).text
    finally:
        composer.stop()
        gateway.terminate()
        gateway.wait(timeout=10)
    document = json.loads((tmp_path / "eval_results.json").read_text())
    labels = f'alias="prod",app_version="{document["app_version"]}",instance="",job="technoshare_eval"'
    assert f"technoshare_eval_pass_rate{{{labels}}} 1" in metrics
    assert f"technoshare_eval_examples{{{labels}}} {EXAMPLES}" in metrics
    assert document["overall_pass_rate"] == 1.0 and document["prompt_versions"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
