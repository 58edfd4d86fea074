"""Prompt templates, kept as YAML in data/prompts/ with `{{ variable }}` placeholders (MLflow's syntax)."""

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from technoshare_common.tracing import lean_mlflow_client, use_tracking_uri

log = logging.getLogger(__name__)

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
        """Identifies what the model sees: both messages and the model parameters."""
        content = json.dumps([self.system, self.user, self.parameters], sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()[:12]

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

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


def prompt_length(messages: list[dict[str, Any]]) -> int:
    """Characters of a rendered prompt: the `prompt_length` on stage_b.run, where a prompt that grows shows."""
    return sum(len(str(message.get("content") or "")) for message in messages)


def load_local_prompts(prompts_dir: Path) -> dict[str, PromptTemplate]:
    return {prompt.name: prompt for prompt in map(load_prompt, sorted(prompts_dir.glob("*.yaml")))}


@dataclass
class _Cached:
    prompt: PromptTemplate
    loaded_at: float


class PromptStore:
    """Prompts by name: `prompts:/NAME@ALIAS` from the MLflow registry, else the YAML in data/prompts.

    A job never waits for MLflow: a stale or missing entry is refreshed on a worker thread while the
    job uses what the store has (the registry's last answer, or the YAML). An alias move therefore
    takes effect within the TTL, without a restart.
    """

    def __init__(
        self, prompts_dir: Path, registry: "PromptRegistry | None" = None, alias: str = "prod", ttl: float = 60.0
    ) -> None:
        self.prompts_dir = prompts_dir
        self.registry = registry
        self.alias = alias
        self.ttl = ttl
        self._cache: dict[str, _Cached] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._local: dict[str, tuple[int, PromptTemplate]] = {}

    def get(self, name: str) -> PromptTemplate:
        cached = self._cache.get(name)
        if self.registry is not None and (cached is None or time.monotonic() - cached.loaded_at > self.ttl):
            self._refresh_in_background(name)
        return cached.prompt if cached else self._yaml(name)

    def _yaml(self, name: str) -> PromptTemplate:
        """The YAML prompt, parsed again only when its file changed: an edit still shows at the next job, but a job's
        several uses of a prompt no longer parse it each time (a tenth of composer's CPU per job without MLflow)."""
        path = self.prompts_dir / f"{name}.yaml"
        modified = path.stat().st_mtime_ns
        known = self._local.get(name)
        if known is not None and known[0] == modified:
            return known[1]
        prompt = load_prompt(path)
        self._local[name] = (modified, prompt)
        return prompt

    def pin(self, name: str) -> PromptTemplate:
        """Loads `name` at the alias now and keeps it: for a run that must use exactly that version (the
        evaluation suite); raises when the registry or the alias is missing instead of serving the YAML."""
        if self.registry is None:
            raise RuntimeError("no prompt registry: set MLFLOW_TRACKING_URI")
        prompt = self.registry.load(name, self.alias)
        self._cache[name] = _Cached(prompt, float("inf"))
        return prompt

    def warm_up(self) -> None:
        for name in load_local_prompts(self.prompts_dir):
            self.get(name)

    def _refresh_in_background(self, name: str) -> None:
        with self._lock:
            if name in self._refreshing:
                return
            self._refreshing.add(name)
        threading.Thread(target=self._refresh, args=(name,), name=f"prompt-{name}", daemon=True).start()

    def _refresh(self, name: str) -> None:
        assert self.registry is not None
        try:
            prompt = self.registry.load(name, self.alias)
            self._warned.discard(name)
        except Exception as exc:
            if name not in self._warned:
                log.warning(
                    "prompt registry unavailable; using the YAML prompt",
                    extra={"prompt": name, "alias": self.alias, "error": str(exc)[:300]},
                )
                self._warned.add(name)
            prompt = self._yaml(name)
        finally:
            with self._lock:
                self._refreshing.discard(name)
        self._cache[name] = _Cached(prompt, time.monotonic())


class PromptRegistry:
    """The MLflow Prompt Registry: each YAML prompt is a chat prompt with its parameters as model config."""

    HASH_TAG = "content_hash"

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        lean_mlflow_client()

    def _mlflow(self) -> Any:
        import mlflow

        use_tracking_uri(self.tracking_uri)
        return mlflow

    def load(self, name: str, alias: str) -> PromptTemplate:
        # No caching inside MLflow: PromptStore decides how long an answer holds.
        version = self._mlflow().genai.load_prompt(f"prompts:/{name}@{alias}", cache_ttl_seconds=0)
        messages = {message["role"]: message["content"] for message in version.template}
        return PromptTemplate(
            name=name,
            system=messages["system"],
            user=messages["user"],
            parameters=dict(version.model_config or {}),
            version=str(version.version),
        )

    def latest(self, name: str) -> Any:
        return self._mlflow().genai.load_prompt(f"prompts:/{name}@latest", allow_missing=True, cache_ttl_seconds=0)

    def sync(self, prompt: PromptTemplate, message: str) -> tuple[str, bool]:
        """Register a new version only when the content hash changed; returns (version, registered)."""
        latest = self.latest(prompt.name)
        if latest is not None and latest.tags.get(self.HASH_TAG) == prompt.content_hash:
            return str(latest.version), False
        registered = self._mlflow().genai.register_prompt(
            name=prompt.name,
            template=prompt.messages(),
            commit_message=message,
            tags={self.HASH_TAG: prompt.content_hash},
            model_config=prompt.parameters or None,
        )
        return str(registered.version), True

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._mlflow().genai.set_prompt_alias(name, alias=alias, version=version)

    def alias_version(self, name: str, alias: str) -> str | None:
        found = self._mlflow().genai.load_prompt(f"prompts:/{name}@{alias}", allow_missing=True, cache_ttl_seconds=0)
        return str(found.version) if found is not None else None
