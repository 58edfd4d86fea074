"""Without a registry, composer reads data/prompts' YAML: parsed once per change of the file, not on every use (a
job uses each prompt several times, and parsing them was a tenth of composer's CPU per job)."""

import os
from pathlib import Path

import pytest

from composer import prompts
from composer.prompts import PromptStore

PROMPT = "name: greet\nsystem: Be brief.\nuser: Say {what}.\nparameters: {{temperature: 0}}\n"


def test_a_yaml_prompt_is_parsed_once_until_its_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "greet.yaml"
    path.write_text(PROMPT.format(what="hello"))
    parsed: list[Path] = []
    real = prompts.load_prompt
    monkeypatch.setattr(prompts, "load_prompt", lambda p: parsed.append(p) or real(p))
    store = PromptStore(tmp_path)

    assert [store.get("greet").user for _ in range(3)] == ["Say hello."] * 3
    assert parsed == [path]

    path.write_text(PROMPT.format(what="goodbye"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later mtime, however coarse the clock
    assert store.get("greet").user == "Say goodbye."
    assert parsed == [path, path]
