"""The chart rendered by the real helm (unpacked by `make chart-check`), as Kubernetes objects."""

import subprocess
from typing import Any

import yaml

from tests.support.servers import ROOT

HELM = ROOT / ".cache" / "tools" / "helm" / "helm"


def render_chart() -> list[dict[str, Any]]:
    assert HELM.exists(), "helm is missing: run `make chart-check` (make test does)"
    rendered = subprocess.run(
        [str(HELM), "template", "t", str(ROOT / "charts" / "technoshare"), "--set", "secrets.slack.signingSecret=x"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]
