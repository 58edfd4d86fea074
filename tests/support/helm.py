"""The real helm (unpacked by `make chart-check`) on charts/technoshare with chosen values: render_chart renders the
defaults only, the tests of the chart's options and of its values schema need others."""

import re
import subprocess
from typing import Any

import yaml

from tests.support.chart import HELM
from tests.support.servers import ROOT

CHART = ROOT / "charts" / "technoshare"
CI_DEFAULTS = CHART / "ci" / "default-values.yaml"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM.exists(), "helm is missing: run `make chart-check` (make test does)"
    return subprocess.run([str(HELM), *args], capture_output=True, text=True)


def render(*args: str) -> list[dict[str, Any]]:
    """The chart's objects with the CI defaults (the secrets a render without a cluster needs) and then `args`."""
    result = helm("template", "t", str(CHART), "-f", str(CI_DEFAULTS), *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_templates(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each component's pod (its `metadata` and `spec`), from every kind of workload the chart renders."""
    found = {}
    for doc in documents:
        spec = doc.get("spec") or {}
        if doc["kind"] == "Pod":
            pod = doc
        elif doc["kind"] == "CronJob":
            pod = spec["jobTemplate"]["spec"]["template"]
        elif doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            pod = spec["template"]
        else:
            continue
        found[pod["metadata"]["labels"]["app.kubernetes.io/component"]] = pod
    return found


def deployments(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Deployments' pod specs by component (ingest, composer, …, mlflow)."""
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc["spec"]["template"]["spec"]
        for doc in documents
        if doc["kind"] == "Deployment"
    }


def pod_env(container: dict[str, Any], documents: list[dict[str, Any]], pod_name: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: Secrets' values (the chart's own), the pod's name from
    the downward API, and $(NAME) replaced by a variable defined earlier in the list."""
    secrets = {doc["metadata"]["name"]: doc.get("stringData", {}) for doc in documents if doc["kind"] == "Secret"}
    env: dict[str, str] = {}
    for entry in container["env"]:
        source = entry.get("valueFrom", {})
        secret = secrets.get(source.get("secretKeyRef", {}).get("name"), {})
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda ref: env.get(ref[1], ref[0]), entry["value"])
        elif source.get("secretKeyRef", {}).get("key") in secret:
            env[entry["name"]] = secret[source["secretKeyRef"]["key"]]
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[entry["name"]] = pod_name
    return env
