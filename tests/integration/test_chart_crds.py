"""The CRD schema check of `make chart-check` passes the chart's custom resources and catches broken ones."""

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.chart import render_chart
from tests.support.servers import ROOT

VALIDATOR = ROOT / "scripts" / "crd_validate"


def _validate(resources: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert (VALIDATOR / "node_modules").exists(), "CRD schemas missing: run `make chart-check` (make test does)"
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(resources))
    return subprocess.run(["node", str(VALIDATOR / "validate.mjs"), str(path)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def custom_resources() -> list[dict[str, Any]]:
    kinds = {"ServiceMonitor", "PrometheusRule"}
    return [doc for doc in render_chart() if doc["kind"] in kinds]


def test_the_charts_custom_resources_match_their_crds(custom_resources: list[dict[str, Any]], tmp_path: Path) -> None:
    result = _validate(custom_resources, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "PrometheusRule,", "8", "ServiceMonitor"]


def test_broken_resources_are_named_with_what_is_wrong(custom_resources: list[dict[str, Any]], tmp_path: Path) -> None:
    monitor = copy.deepcopy(next(doc for doc in custom_resources if doc["kind"] == "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["port"] = 8080
    rule = copy.deepcopy(next(doc for doc in custom_resources if doc["kind"] == "PrometheusRule"))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "slack"},
        "spec": {"rules": [{"matches": [{"path": {"type": "Prefix"}}], "backendRefs": [{"port": 8080}]}]},
    }
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}

    result = _validate([monitor, rule, route, unknown], tmp_path)

    assert result.returncode == 1
    problems = result.stderr.splitlines()
    assert len(problems) == 4, result.stderr
    assert "endpoints/0/port must be string" in problems[0]
    assert "must have required property expr" in problems[1]
    assert problems[2].startswith("HTTPRoute/slack: ") and "backendRefs/0" in problems[2]
    assert problems[3] == "Widget/w: no schema for example.com/v1 Widget"
