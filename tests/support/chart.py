"""The chart rendered by the real helm (unpacked by `make chart-check`), as Kubernetes objects."""

import subprocess
from typing import Any

import yaml

from tests.support.servers import ROOT

HELM = ROOT / ".cache" / "tools" / "helm" / "helm"


def render_chart() -> list[dict[str, Any]]:
    """The defaults, with the values a render that sees no cluster must be given (ci/default-values.yaml)."""
    assert HELM.exists(), "helm is missing: run `make chart-check` (make test does)"
    chart = ROOT / "charts" / "technoshare"
    rendered = subprocess.run(
        [str(HELM), "template", "t", str(chart), "-f", str(chart / "ci" / "default-values.yaml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]
