"""Prompts in a real MLflow Prompt Registry: sync by content hash, aliases, TTL reloads, the YAML fallback."""

import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from composer.prompts import PromptRegistry, PromptStore, load_local_prompts
from technoshare_common.settings import REPO_DATA_DIR
from tests.support.servers import free_port, wait_until

BIN = Path(sys.executable).parent


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    """The real prompts under names of this test's own, as the registry is shared by the session."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    suffix = uuid.uuid4().hex[:8]
    for path in (REPO_DATA_DIR / "prompts").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        data["name"] = f"{data['name']}_{suffix}"
        (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def run_command(command: str, mlflow_server: str, *args: str) -> str:
    """One of technoshare-evaluation's console scripts, as installed in this venv."""
    completed = subprocess.run(
        [str(BIN / command), "--tracking-uri", mlflow_server, *args], capture_output=True, text=True, check=True
    )
    return completed.stdout


def sync_prompts(mlflow_server: str, prompts_dir: Path) -> str:
    return run_command("technoshare-sync-prompts", mlflow_server, "--prompts-dir", str(prompts_dir))


def prompt_alias(mlflow_server: str, *args: str) -> str:
    return run_command("technoshare-prompt-alias", mlflow_server, *args)


def test_sync_registers_a_version_only_when_the_content_changes(prompts_dir: Path, mlflow_server: str) -> None:
    first = sync_prompts(mlflow_server, prompts_dir)
    local = load_local_prompts(prompts_dir)
    for name, prompt in local.items():
        assert f"{name:<26} {'1':>7}  {prompt.content_hash:<12}  registered  1" in first
    again = sync_prompts(mlflow_server, prompts_dir)
    assert again.count("unchanged") == len(local)

    [stage_b] = [path for path in prompts_dir.glob("stage_b_compose_reply_*.yaml")]
    data = yaml.safe_load(stage_b.read_text())
    data["parameters"]["temperature"] = 0.5
    stage_b.write_text(yaml.safe_dump(data, sort_keys=False))
    changed = sync_prompts(mlflow_server, prompts_dir)
    line = next(row for row in changed.splitlines() if row.startswith(data["name"]))
    assert line.split()[1:] == ["2", load_local_prompts(prompts_dir)[data["name"]].content_hash, "registered", "1"]

    registry = PromptRegistry(mlflow_server)
    assert registry.load(data["name"], "prod").parameters["temperature"] == 0.3  # prod did not move
    moved = prompt_alias(mlflow_server, "set", data["name"], "candidate", "2")
    assert moved.strip() == f"{data['name']}@candidate: (unset) -> 2"
    shown = prompt_alias(mlflow_server, "show", data["name"])
    assert f"{data['name']}@prod: 1" in shown and f"{data['name']}@candidate: 2" in shown
    candidate = registry.load(data["name"], "candidate")
    assert candidate.version == "2" and candidate.parameters["temperature"] == 0.5
    assert candidate.system == local[data["name"]].system


def test_composer_follows_an_alias_move_without_a_restart(prompts_dir: Path, mlflow_server: str) -> None:
    sync_prompts(mlflow_server, prompts_dir)
    [name] = [name for name in load_local_prompts(prompts_dir) if name.startswith("stage_a_")]
    store = PromptStore(prompts_dir, PromptRegistry(mlflow_server), alias="prod", ttl=0.5)
    assert store.get(name).version.startswith("local-")  # the first call never waits for MLflow
    wait_until(lambda: store.get(name).version == "1", timeout=30, what="the registry's prod version")

    path = prompts_dir / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    data["user"] += "\nBe concise."
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    sync_prompts(mlflow_server, prompts_dir)
    prompt_alias(mlflow_server, "set", name, "prod", "2")
    wait_until(lambda: store.get(name).version == "2", timeout=30, what="the moved alias")
    assert store.get(name).user.endswith("Be concise.")


def test_without_mlflow_the_yaml_prompt_serves(prompts_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    [name] = [name for name in load_local_prompts(prompts_dir) if name.startswith("stage_b_compose_reply_")]
    store = PromptStore(prompts_dir, PromptRegistry(f"http://127.0.0.1:{free_port()}"), ttl=0.1)
    with caplog.at_level(logging.WARNING, logger="composer.prompts"):
        store.get(name)
        wait_until(lambda: name in store._cache, timeout=60, what="the fallback")
    prompt = store.get(name)
    assert prompt.version.startswith("local-")
    assert prompt.system == load_local_prompts(prompts_dir)[name].system
    assert "prompt registry unavailable; using the YAML prompt" in caplog.text
