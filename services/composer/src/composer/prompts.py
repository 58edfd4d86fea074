"""Prompt templates, kept as YAML in data/prompts/ with `{{ variable }}` placeholders (MLflow's syntax)."""

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str
    parameters: dict[str, Any] = field(default_factory=dict)
    version: str = "local"

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(f"{self.system}\n---\n{self.user}".encode()).hexdigest()[:12]

    def variables(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.system)) | set(_PLACEHOLDER.findall(self.user))

    def render(self, **values: str) -> list[dict[str, str]]:
        missing = self.variables() - values.keys()
        if missing:
            raise KeyError(f"prompt {self.name} needs {sorted(missing)}")

        def fill(template: str) -> str:
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

        return [{"role": "system", "content": fill(self.system)}, {"role": "user", "content": fill(self.user)}]


def load_prompt(path: Path) -> PromptTemplate:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return PromptTemplate(
        name=data["name"],
        system=data["system"].strip(),
        user=data["user"].strip(),
        parameters=dict(data.get("parameters") or {}),
        version=f"local-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}",
    )


class PromptStore:
    """Loads prompts by name; the MLflow registry (prompts:/NAME@prod) plugs in here."""

    def __init__(self, prompts_dir: Path) -> None:
        self.prompts_dir = prompts_dir

    def get(self, name: str) -> PromptTemplate:
        return load_prompt(self.prompts_dir / f"{name}.yaml")
