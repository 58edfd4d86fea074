"""The running configuration as an MLflow app version (a LoggedModel), so live traffic and eval runs compare
versions side by side.

A version is everything that changes the replies: the git revision, the prompt versions, the models and
the gate settings. Its name is a hash of them, so the same configuration is the same version on every
replica and after every restart. Registering one talks to MLflow, so it happens on a background thread:
a job whose version is not registered yet simply carries no link.
"""

import hashlib
import json
import logging
import os
import subprocess
import threading
from functools import cache
from pathlib import Path
from typing import Any

from composer.settings import ComposerSettings
from technoshare_common.background import BackgroundSender

log = logging.getLogger(__name__)

MODEL_TYPE = "technoshare-commentator"


@cache
def git_revision() -> str:
    """TECHNOSHARE_GIT_REVISION (set when an image is built), else the checkout's HEAD, else 'unknown'."""
    if revision := os.environ.get("TECHNOSHARE_GIT_REVISION"):
        return revision
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return found.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def app_config(settings: ComposerSettings, prompt_versions: dict[str, str]) -> dict[str, str]:
    config = {
        "git_revision": git_revision(),
        "compose_mode": settings.resolved_compose_mode().value,
        "model.stage_a": settings.stage_a_model,
        "model.stage_b": settings.stage_b_model,
        "stage_a.tools": str(settings.stage_a_tools).lower(),
        "evidence_window_chars": str(settings.evidence_window_chars),
        "gate.tldr_sentences": str(settings.tldr_sentences),
        "gate.summary_min_sentences": str(settings.summary_min_sentences),
        "gate.summary_max_sentences": str(settings.summary_max_sentences),
        "gate.repair_attempts": str(settings.repair_attempts),
    }
    return config | {f"prompt.{name}": version for name, version in sorted(prompt_versions.items())}


def version_name(config: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return f"technoshare-{digest[:12]}"


class AppVersions:
    """Registered app versions by name, and the registration of new ones off the job's path."""

    def __init__(self, tracking_uri: str | None, experiment: str, enabled: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.enabled = enabled and bool(tracking_uri)
        self._known: dict[str, str] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._sender: BackgroundSender[dict[str, str]] = BackgroundSender("mlflow-app-versions", self._register)

    def current(self, config: dict[str, str]) -> tuple[str, str | None]:
        """This configuration's version name, and its LoggedModel id once registered."""
        name = version_name(config)
        if not self.enabled:
            return name, None
        with self._lock:
            if name in self._known:
                return name, self._known[name]
            first_ask = name not in self._pending
            self._pending.add(name)
        if first_ask:
            self._sender.submit(config)
        return name, None

    def registered_id(self, name: str | None) -> str | None:
        """The LoggedModel id of a version this process has seen registered; never calls MLflow."""
        with self._lock:
            return self._known.get(name) if name else None

    def register(self, config: dict[str, str]) -> str:
        """The LoggedModel for this configuration, created the first time it is seen (by any replica)."""
        from mlflow import MlflowClient

        name = version_name(config)
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.experiment)
        found = client.search_logged_models([experiment_id], filter_string=f"name = '{name}'", max_results=1)
        if found:
            model_id = found[0].model_id
        else:
            model = client.create_logged_model(
                experiment_id, name=name, params=config, model_type=MODEL_TYPE, tags=_tags(config)
            )
            client.finalize_logged_model(model.model_id, "READY")
            model_id = model.model_id
            log.info("new app version registered", extra={"app_version": name, "model_id": model_id})
        with self._lock:
            self._known[name] = model_id
            self._pending.discard(name)
        return model_id

    def _register(self, config: dict[str, str]) -> None:
        try:
            self.register(config)
        except Exception:
            with self._lock:
                self._pending.discard(version_name(config))  # asked again by the next job
            raise


def _tags(config: dict[str, Any]) -> dict[str, str]:
    return {"git_revision": str(config["git_revision"]), "stage_b_model": str(config["model.stage_b"])}
