"""ingest's settings for tests of the app in-process: a SQLite job store, no composer, a dispatcher that waits."""

from pathlib import Path
from typing import Any

from ingest.settings import IngestSettings


def ingest_settings(tmp_path: Path, **overrides: Any) -> IngestSettings:
    """`overrides` as IngestSettings' variables; the job store is tmp_path/jobs.db, and composer unreachable."""
    values: dict[str, Any] = {
        "SLACK_SIGNING_SECRET": "s",
        "JOB_STORE_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "COMPOSER_URL": "http://127.0.0.1:9",
        "DISPATCH_POLL_SECONDS": 60,
    }
    return IngestSettings(**(values | overrides))
