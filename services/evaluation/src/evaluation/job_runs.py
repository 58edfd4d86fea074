"""What live jobs left in MLflow (composer.tracking): their runs' pinned artifacts, read back by the regression
cases (evaluation.regressions) and the shadow canary (evaluation.canary)."""

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

JOBS_EXPERIMENT = "technoshare_commentator"
# The artifacts a job run pins: the evidence the reply was made from, the reply, and the (redacted) Slack message.
EVIDENCE, REPLY, MESSAGE = "evidence.json", "stage_b_result.json", "slack_message.txt"


def run_artifacts(client: Any, run_id: str, names: Iterable[str] = (EVIDENCE, REPLY, MESSAGE)) -> dict[str, str]:
    """The named artifacts the run has, by name (a run logged before an artifact existed lacks it)."""
    present = {artifact.path for artifact in client.list_artifacts(run_id)}
    with tempfile.TemporaryDirectory() as folder:
        return {
            name: Path(client.download_artifacts(run_id, name, folder)).read_text(encoding="utf-8")
            for name in names
            if name in present
        }
