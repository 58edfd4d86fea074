"""Fixtures of the integration tests."""

from collections.abc import Iterator

import pytest

from ingest.store import JobStore


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    """ingest's job store, its schema created, on each database `database_url` stands for."""
    job_store = JobStore(database_url)
    job_store.create_schema()
    yield job_store
    job_store.engine.dispose()
