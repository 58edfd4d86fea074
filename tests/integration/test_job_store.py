"""The durable job store on SQLite and on a real PostgreSQL server."""

import time
from concurrent.futures import ThreadPoolExecutor

from ingest.slack_events import SharedLink
from ingest.store import JobStore
from technoshare_common.schemas import ComposeResult, JobState, Outcome


def _link(url: str = "https://arxiv.org/abs/2106.09685", ts: str = "1700000000.000100") -> SharedLink:
    return SharedLink("C1", ts, ts, url, f"<{url}>")


def _store(database_url: str) -> JobStore:
    store = JobStore(database_url)
    store.create_schema()
    return store


def test_a_repeated_link_is_one_job(database_url: str) -> None:
    store = _store(database_url)
    first, created = store.enqueue(_link(), "Ev1")
    again, created_again = store.enqueue(_link(), "Ev1")
    other, created_other = store.enqueue(_link("https://github.com/pallets/flask"), "Ev1")
    assert created and not created_again and created_other
    assert again == first and other != first
    assert store.count_by_state() == {"queued": 2}


def test_only_one_of_many_dispatchers_claims_a_job(database_url: str) -> None:
    store = _store(database_url)
    store.enqueue(_link(), "Ev1")
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: store.claim_next(lease_seconds=60), range(8)))
    assert len([c for c in claims if c is not None]) == 1


def test_an_expired_lease_is_claimed_again_and_the_old_holder_cannot_finish(database_url: str) -> None:
    store = _store(database_url)
    job_id, _ = store.enqueue(_link(), "Ev1")
    first = store.claim_next(lease_seconds=0.2)
    assert first is not None and store.claim_next(lease_seconds=60) is None
    time.sleep(0.3)
    second = store.claim_next(lease_seconds=60)
    assert second is not None and second.id == job_id and second.attempts == 2

    stale = ComposeResult(job_id=job_id, url=first.url, outcome=Outcome.error, error="late")
    assert store.complete(first, stale) is False
    fresh = ComposeResult(job_id=job_id, url=first.url, outcome=Outcome.success, text="reply", timings={"total": 1.5})
    assert store.complete(second, fresh) is True
    view = store.get(job_id)
    assert view is not None
    assert (view.state, view.outcome, view.reply_text, view.timings) == (
        JobState.done,
        Outcome.success,
        "reply",
        {"total": 1.5},
    )


def test_a_released_job_waits_for_its_backoff(database_url: str) -> None:
    store = _store(database_url)
    store.enqueue(_link(), "Ev1")
    job = store.claim_next(lease_seconds=60)
    assert job is not None
    assert store.release(job, "composer down", retry_in=0.3)
    assert store.claim_next(lease_seconds=60) is None
    time.sleep(0.35)
    again = store.claim_next(lease_seconds=60)
    assert again is not None and again.attempts == 2


def test_a_failed_job_is_done_with_its_error(database_url: str) -> None:
    store = _store(database_url)
    job_id, _ = store.enqueue(_link(), "Ev1")
    job = store.claim_next(lease_seconds=60)
    assert job is not None and store.fail(job, "gave up")
    [view] = store.find(channel_id="C1", message_ts=job.message_ts)
    assert (view.id, view.state, view.outcome, view.error) == (job_id, JobState.done, Outcome.error, "gave up")
    assert store.claim_next(lease_seconds=60) is None


def test_a_store_made_before_a_new_column_gets_it_added(database_url: str) -> None:
    from sqlalchemy import inspect as inspect_schema
    from sqlalchemy import text as sql

    store = JobStore(database_url)
    store.create_schema()
    with store.engine.begin() as conn:
        conn.execute(sql("ALTER TABLE jobs DROP COLUMN trace_id"))
    assert "trace_id" not in {c["name"] for c in inspect_schema(store.engine).get_columns("jobs")}
    store.create_schema()
    assert "trace_id" in {c["name"] for c in inspect_schema(store.engine).get_columns("jobs")}
    assert store.find_by_reply("C1", "1.1") is None
