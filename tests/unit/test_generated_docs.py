"""The generated references (docs/configuration.md, docs/chart-values.md, docs/metrics.md) match the code.

scripts/gen_docs.py --check regenerates them in memory, in a process of its own (a fresh Prometheus registry).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_checked_in_references_are_what_the_code_generates() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert check.returncode == 0, f"The generated docs drifted: run `make docs`.\n{check.stdout}{check.stderr}"
