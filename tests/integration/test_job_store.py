"""The durable job store on SQLite and on a real PostgreSQL server."""

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, text

from ingest.slack_events import SharedLink
from ingest.store import JobStore, StaleAttempt
from technoshare_common.schemas import ComposeResult, JobCheckpoints, JobState, Outcome, StageACheckpoint
from tests.support.jobs import arxiv_job
from tests.support.servers import wait_until


def _link(url: str = "https://arxiv.org/abs/2106.09685", ts: str = "1700000000.000100") -> SharedLink:
    return SharedLink("C1", ts, ts, url, f"<{url}>")


def test_a_repeated_link_is_one_job(store: JobStore) -> None:
    first, created = store.enqueue(_link(), "Ev1")
    again, created_again = store.enqueue(_link(), "Ev1")
    other, created_other = store.enqueue(_link("https://github.com/pallets/flask"), "Ev1")
    assert created and not created_again and created_other
    assert again == first and other != first
    assert store.count_by_state() == {"queued": 2}


def test_only_one_of_many_dispatchers_claims_a_job(store: JobStore) -> None:
    store.enqueue(_link(), "Ev1")
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: store.claim_next(lease_seconds=60), range(8)))
    assert len([c for c in claims if c is not None]) == 1


def test_an_expired_lease_is_claimed_again_and_the_old_holder_cannot_finish(store: JobStore) -> None:
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


def test_a_released_job_waits_for_its_backoff(store: JobStore) -> None:
    store.enqueue(_link(), "Ev1")
    job = store.claim_next(lease_seconds=60)
    assert job is not None
    assert store.release(job, "composer down", retry_in=0.3)
    assert store.claim_next(lease_seconds=60) is None
    time.sleep(0.35)
    again = store.claim_next(lease_seconds=60)
    assert again is not None and again.attempts == 2


def test_a_failed_job_is_done_with_its_error(store: JobStore) -> None:
    job_id, _ = store.enqueue(_link(), "Ev1")
    job = store.claim_next(lease_seconds=60)
    assert job is not None and store.fail(job, "gave up")
    [view] = store.find(channel_id="C1", message_ts=job.message_ts)
    assert (view.id, view.state, view.outcome, view.error) == (job_id, JobState.done, Outcome.error, "gave up")
    assert store.claim_next(lease_seconds=60) is None


def test_a_store_made_before_a_new_column_gets_it_added(store: JobStore) -> None:
    from sqlalchemy import inspect as inspect_schema
    from sqlalchemy import text as sql

    with store.engine.begin() as conn:
        conn.execute(sql("ALTER TABLE jobs DROP COLUMN trace_id"))
    assert "trace_id" not in {c["name"] for c in inspect_schema(store.engine).get_columns("jobs")}
    store.create_schema()
    assert "trace_id" in {c["name"] for c in inspect_schema(store.engine).get_columns("jobs")}
    assert store.find_by_reply("C1", "1.1") is None


def test_leases_are_timed_on_the_database_clock(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.enqueue(_link(), "Ev1")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # a replica whose clock is an hour behind
    assert store.claim_next(lease_seconds=60) is not None
    monkeypatch.setattr(time, "time", real_time)
    assert store.claim_next(lease_seconds=60) is None  # its 60 s lease still holds for everyone else


def test_a_locked_job_is_skipped_not_waited_for(postgres_url: str) -> None:
    store = JobStore(postgres_url)
    store.create_schema()
    first, _ = store.enqueue(_link(), "Ev1")
    second, _ = store.enqueue(_link("https://github.com/pallets/flask"), "Ev1")
    pool = ThreadPoolExecutor(1)
    try:
        with store.engine.connect() as holder, holder.begin():
            holder.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": first})
            claimed = pool.submit(store.claim_next, 60).result(timeout=5)
    finally:
        pool.shutdown()  # after the holder's lock is gone, so a claim blocked on it can finish
    assert claimed is not None and claimed.id == second


def test_a_heartbeat_keeps_a_short_lease(store: JobStore, database_url: str) -> None:
    store.enqueue(_link(), "Ev1")
    claimed_at = time.time()
    job = store.claim_next(lease_seconds=0.2)
    assert job is not None and store.extend_lease(job, lease_seconds=60)
    wait_until(lambda: time.time() > claimed_at + 0.5, what="the first lease to run out")
    assert JobStore(database_url).claim_next(lease_seconds=60) is None


def test_a_released_lease_is_claimable_at_once_without_spending_an_attempt(store: JobStore) -> None:
    job_id, _ = store.enqueue(_link(), "Ev1")
    job = store.claim_next(lease_seconds=600)
    assert job is not None and store.abandon(job)
    again = store.claim_next(lease_seconds=600)
    assert again is not None and again.id == job_id and again.attempts == 1
    assert store.extend_lease(job, 60) is False  # the old holder no longer holds it


def test_queue_stats_count_due_jobs_and_their_age(store: JobStore) -> None:
    store.enqueue(_link(), "Ev1")
    store.enqueue(_link("https://github.com/pallets/flask"), "Ev1")
    running = store.claim_next(lease_seconds=600)
    assert running is not None
    stats = store.queue_stats()
    assert stats.by_state == {"queued": 1, "running": 1}
    assert stats.due == 1
    assert 0 <= stats.oldest_due_age_seconds < 60


def test_checkpoints_are_kept_for_the_next_attempt_and_shown_on_the_job(store: JobStore) -> None:
    _, finished = arxiv_job("unused")
    assert finished.evidence is not None and finished.facts is not None
    job_id, _ = store.enqueue(_link(), "Ev1")
    first = store.claim_next(lease_seconds=60)
    assert first is not None and first.checkpoints is None
    stage_a = StageACheckpoint(facts=finished.facts, usage=finished.usage, model="gpt-4o-mini")
    assert store.save_checkpoints(job_id, JobCheckpoints(evidence=finished.evidence)) == ["evidence"]
    assert store.save_checkpoints(job_id, JobCheckpoints(stage_a=stage_a)) == ["evidence", "stage_a"]
    assert store.save_checkpoints("no-such-job", JobCheckpoints(stage_a=stage_a)) is None
    store.release(first, "composer died", retry_in=0)

    second = store.claim_next(lease_seconds=60)
    assert second is not None and second.checkpoints == JobCheckpoints(evidence=finished.evidence, stage_a=stage_a)
    view = store.get(job_id)
    assert view is not None and view.checkpoints.stages() == ["evidence", "stage_a"]
    [listed] = store.find(channel_id="C1")
    assert listed.checkpoints.stages() == []  # lists stay light; GET /v1/jobs/{id} has them


def test_checkpoints_that_no_longer_parse_are_dropped_and_never_stop_claims(store: JobStore) -> None:
    """A row written by another version's models once failed every claim: dispatch stopped on every replica."""
    stale, _ = store.enqueue(_link(), "Ev1")
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET checkpoints_json = :bad WHERE id = :id"),
            {"bad": '{"stage_a": {"x": 1}}', "id": stale},
        )
    job = store.claim_next(lease_seconds=60)
    assert job is not None and job.id == stale and job.checkpoints is None


def test_a_finished_job_is_timed_on_the_database_clock(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """finished_at once came from the replica's clock: an hour-slow replica put jobs' ends before their starts."""
    done_id, _ = store.enqueue(_link(), "Ev1")
    failed_id, _ = store.enqueue(_link("https://github.com/pallets/flask"), "Ev1")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # this replica's clock is an hour behind
    for job_id in (done_id, failed_id):
        job = store.claim_next(lease_seconds=60)
        assert job is not None and job.id == job_id
        if job_id == done_id:
            assert store.complete(job, ComposeResult(job_id=job_id, url=job.url, outcome=Outcome.success))
        else:
            assert store.fail(job, "gave up")
    monkeypatch.setattr(time, "time", real_time)
    for job_id in (done_id, failed_id):
        view = store.get(job_id)
        assert view is not None and view.started_at and view.finished_at
        assert view.started_at <= view.finished_at
        assert abs(view.finished_at.timestamp() - real_time()) < 60


def test_concurrent_saves_of_different_stages_both_survive(store: JobStore) -> None:
    """SQLite's read-merge-write of the JSON column once let the second of two concurrent saves drop the first."""
    _, finished = arxiv_job("unused")
    assert finished.facts is not None
    job_id, _ = store.enqueue(_link(), "Ev1")
    stage_a = StageACheckpoint(facts=finished.facts, usage=finished.usage, model="gpt-4o-mini")
    saves = [JobCheckpoints(evidence=finished.evidence), JobCheckpoints(stage_a=stage_a)]
    # Each statement of a save that touches the checkpoints waits (up to 2 s) until the other save has run one too,
    # so the two interleave as far as the database lets them.
    barrier = threading.Barrier(2, timeout=2)

    def interleave(conn, cursor, statement: str, *_: object) -> None:  # type: ignore[no-untyped-def]
        if "checkpoints_json" in statement and threading.current_thread().name.startswith("save"):
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    event.listen(store.engine, "after_cursor_execute", interleave)
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="save") as pool:
            list(pool.map(lambda finished: store.save_checkpoints(job_id, finished), saves))
    finally:
        event.remove(store.engine, "after_cursor_execute", interleave)
    view = store.get(job_id)
    assert view is not None and view.checkpoints.stages() == ["evidence", "stage_a"]


def test_a_stale_attempt_cannot_save_checkpoints(store: JobStore) -> None:
    """After a lease takeover or a give-back, the old attempt's composer may still run: its saves are refused."""
    _, finished = arxiv_job("unused")
    job_id, _ = store.enqueue(_link(), "Ev1")
    given_back = store.claim_next(lease_seconds=60)
    assert given_back is not None and store.abandon(given_back)  # a replica shutting down
    expired = store.claim_next(lease_seconds=0.2)
    assert expired is not None and expired.claim != given_back.claim
    current = wait_until(lambda: store.claim_next(lease_seconds=60), what="another replica to take the job over")
    evidence = JobCheckpoints(evidence=finished.evidence)
    for stale in (given_back, expired):
        with pytest.raises(StaleAttempt):
            store.save_checkpoints(job_id, evidence.model_copy(update={"attempt": stale.claim}))
    assert store.save_checkpoints(job_id, evidence.model_copy(update={"attempt": current.claim})) == ["evidence"]
    assert store.save_checkpoints(job_id, evidence) == ["evidence"]  # a composer that does not say its attempt
    assert store.save_checkpoints("no-such-job", evidence.model_copy(update={"attempt": 1})) is None
    assert store.complete(current, ComposeResult(job_id=job_id, url=current.url, outcome=Outcome.success))
    with pytest.raises(StaleAttempt):  # the job is done: no attempt holds it any more
        store.save_checkpoints(job_id, evidence.model_copy(update={"attempt": current.claim}))


def test_a_job_past_its_claim_cap_is_never_claimed_and_ends_with_why(store: JobStore) -> None:
    job_id, _ = store.enqueue(_link(), "Ev1")
    for _ in range(2):
        job = store.claim_next(lease_seconds=60, max_claims=2)
        assert job is not None
        store.release(job, "lease ran out", retry_in=0)
    assert store.claim_next(lease_seconds=60, max_claims=2) is None
    assert store.end_overclaimed(max_claims=2) == 1
    view = store.get(job_id)
    assert view is not None and (view.state, view.outcome) == (JobState.done, Outcome.error)
    assert view.error == "claimed 2 times without an outcome (JOB_MAX_CLAIMS)"
    assert store.end_overclaimed(max_claims=2) == 0


def test_replicas_starting_at_once_on_a_fresh_database_all_create_the_schema(database_url: str) -> None:
    """The acks and the dispatcher Deployments start together: PostgreSQL's CREATE TABLE raced them into a unique
    violation on its catalog, and one pod exited at start-up."""
    stores = [JobStore(database_url) for _ in range(6)]
    ready = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def start(store: JobStore) -> None:
        ready.wait()
        try:
            store.create_schema()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        stores[0].enqueue(_link(), "Ev1")
        assert stores[-1].find_by_reply("C1", "none") is None
    finally:
        for store in stores:
            store.engine.dispose()
