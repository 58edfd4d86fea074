"""Slack's acks store their links by group commit: the links that arrive while one insert runs go into the next, and
a retry of a link this process stored lately is answered without the database."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DataError

from ingest.ack import AckStore, StoreUnavailable
from ingest.slack_events import SharedLink
from ingest.store import JobStore
from tests.support.ingest_settings import ingest_settings


def _link(n: int) -> SharedLink:
    return SharedLink("C1", f"{n}.0", f"{n}.0", f"https://example.com/{n}", "<x>")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    job_store = JobStore(ingest_settings(tmp_path).database_url)
    job_store.create_schema()
    yield job_store
    job_store.engine.dispose()


def test_links_arriving_together_are_stored_by_one_insert_and_retries_from_memory(
    tmp_path: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real = store.enqueue_many

    def counted(links: Any) -> list[tuple[str, bool]]:
        batches.append(len(links))
        return real(links)

    monkeypatch.setattr(store, "enqueue_many", counted)
    acks = AckStore(ingest_settings(tmp_path), store)

    async def ack_all() -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
        deadline = asyncio.get_running_loop().time() + 10
        links = [_link(n) for n in range(50)] + [_link(7)]  # Slack's retry inside the same burst
        first = await asyncio.gather(
            *(acks.enqueue(link, f"Ev{n}", None, deadline=deadline) for n, link in enumerate(links))
        )
        again = await asyncio.gather(*(acks.enqueue(_link(n), "Ev-retry", None, deadline=deadline) for n in range(50)))
        return first, again

    try:
        first, again = asyncio.run(ack_all())
    finally:
        acks.shutdown()
    # The first link's insert runs alone; the 50 that came while it ran go together in the next.
    assert sum(batches) == 51 and len(batches) <= 3, batches
    assert sum(created for _, created in first) == 50
    assert first[50] == (first[7][0], False)  # the retry in the burst: the same job, not created again
    assert again == [(job_id, False) for job_id, _ in first[:50]]
    assert sum(batches) == 51  # the retries after it never reached the database
    assert store.count_by_state() == {"queued": 50}


def test_a_link_the_database_refuses_fails_alone_not_the_batch_it_came_in(
    tmp_path: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL refuses text with a NUL byte: that link's ack gets its 503, the links stored with it their 200."""
    real = store.enqueue_many

    def refusing(links: Any) -> list[tuple[str, bool]]:
        if any("\x00" in link.text for link, _, _ in links):
            raise DataError("INSERT INTO jobs ...", {}, ValueError("PostgreSQL text fields cannot contain NUL"))
        return real(links)

    monkeypatch.setattr(store, "enqueue_many", refusing)
    acks = AckStore(ingest_settings(tmp_path), store)
    bad = SharedLink("C1", "9.0", "9.0", "https://example.com/bad", "<x>\x00")

    async def ack_all() -> list[tuple[str, bool] | BaseException]:
        deadline = asyncio.get_running_loop().time() + 10
        links = [_link(1), _link(2), bad, _link(3), _link(4)]
        return await asyncio.gather(
            *(acks.enqueue(link, None, None, deadline=deadline) for link in links), return_exceptions=True
        )

    try:
        results = asyncio.run(ack_all())
    finally:
        acks.shutdown()
    assert isinstance(results[2], StoreUnavailable)
    assert [r[1] for i, r in enumerate(results) if i != 2] == [True] * 4  # type: ignore[index]
    assert store.count_by_state() == {"queued": 4}
