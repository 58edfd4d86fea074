"""The dispatcher survives a failing database, keeps short leases alive, and gives jobs back at shutdown."""

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from ingest.dispatcher import Dispatcher
from ingest.settings import IngestSettings
from ingest.slack_events import SharedLink
from ingest.store import JobStore
from technoshare_common.http import ServiceError
from technoshare_common.schemas import ComposeResult, GateResult, JobCheckpoints, JobRunRequest, JobState, Outcome
from tests.support.jobs import arxiv_job
from tests.support.servers import wait_until


class FakeComposer:
    """composer's client: answers success, raises `fails` on every call, or holds every job until `release` is
    set."""

    def __init__(self, hold: bool = False, fails: Exception | None = None) -> None:
        self.hold = hold
        self.fails = fails
        self.release = asyncio.Event()
        self.calls = 0
        self.requests: list[JobRunRequest] = []

    async def post(self, path: str, request: JobRunRequest, model: type[Any], **_: Any) -> ComposeResult:
        self.calls += 1
        self.requests.append(request)
        if self.fails is not None:
            raise self.fails
        if self.hold:
            await self.release.wait()
        return ComposeResult(job_id=request.job_id, url=str(request.url), outcome=Outcome.success, text="reply")


def make(tmp_path: Path, composer: FakeComposer, **settings: Any) -> tuple[JobStore, Dispatcher]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.create_schema()
    values = {"SLACK_SIGNING_SECRET": "s", "DISPATCH_POLL_SECONDS": 0.05} | settings
    return store, Dispatcher(store, IngestSettings(**values), composer)  # type: ignore[arg-type]


def enqueue(store: JobStore, url: str = "https://example.com/a") -> str:
    job_id, _ = store.enqueue(SharedLink("C1", "1.1", "1.1", url, "<x>"), "Ev1")
    return job_id


def given_up(reason: str) -> float:
    return REGISTRY.get_sample_value("technoshare_jobs_given_up_total", {"reason": reason}) or 0.0


async def until(predicate: Callable[[], Any], what: str) -> None:
    """wait_until off the event loop, so the dispatcher keeps running while the test waits."""
    await asyncio.to_thread(wait_until, predicate, 10, 0.02, what)


async def test_a_failing_database_does_not_end_the_dispatcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, dispatcher = make(tmp_path, FakeComposer())
    job_id = enqueue(store)
    real_claim, failures = store.claim_next, []

    def claim_next(lease_seconds: float, max_claims: int) -> Any:
        if len(failures) < 3:
            failures.append(1)
            raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))
        return real_claim(lease_seconds, max_claims)

    monkeypatch.setattr(store, "claim_next", claim_next)
    dispatcher.start()
    await until(lambda: failures, "a failed claim")
    with pytest.raises(RuntimeError, match="claiming jobs fails: OperationalError"):
        await dispatcher.check_health()
    await until(lambda: (view := store.get(job_id)) and view.state == JobState.done, "the job to finish")
    await dispatcher.check_health()
    await dispatcher.stop()


async def test_readiness_fails_when_the_dispatcher_is_not_running(tmp_path: Path) -> None:
    _, dispatcher = make(tmp_path, FakeComposer())
    with pytest.raises(RuntimeError, match="not running"):
        await dispatcher.check_health()


async def test_a_heartbeat_keeps_a_short_lease_while_composer_works(tmp_path: Path) -> None:
    composer = FakeComposer(hold=True)
    store, dispatcher = make(tmp_path, composer, JOB_LEASE_SECONDS=3)
    job_id = enqueue(store)
    dispatcher.start()
    await until(lambda: composer.calls == 1, "the hand-off")
    first = store.queue_stats()
    assert first.by_state == {"running": 1} and first.due == 0

    def renewed_twice() -> bool:
        # Two renewals (every second) move the lease past where the claim put it; nobody else could claim it.
        return store.claim_next(lease_seconds=60) is None and lease_expires(store, job_id) > claimed_until + 1.5

    claimed_until = lease_expires(store, job_id)
    await until(renewed_twice, "the lease to be renewed")
    composer.release.set()
    await until(lambda: (view := store.get(job_id)) and view.state == JobState.done, "the job to finish")
    await dispatcher.stop()


async def test_shutdown_gives_jobs_in_flight_back_at_once(tmp_path: Path) -> None:
    composer = FakeComposer(hold=True)
    store, dispatcher = make(tmp_path, composer)
    job_id = enqueue(store)
    dispatcher.start()
    await until(lambda: composer.calls == 1, "the hand-off")
    await dispatcher.stop()
    claimed = store.claim_next(lease_seconds=60)  # another replica, at once: no lease left to run out
    assert claimed is not None and claimed.id == job_id and claimed.attempts == 1


async def test_a_job_claimed_while_stopping_is_given_back_not_handed_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim still in its thread when stop() ran once took a job no one handed off or gave back."""
    composer = FakeComposer(hold=True)
    store, dispatcher = make(tmp_path, composer)
    claiming, proceed, claimed_in_thread = threading.Event(), threading.Event(), threading.Event()
    real_claim = store.claim_next

    def claim_when_stopping(lease_seconds: float, max_claims: int):  # type: ignore[no-untyped-def]
        claiming.set()
        proceed.wait(10)
        try:
            return real_claim(lease_seconds, max_claims)
        finally:
            claimed_in_thread.set()

    monkeypatch.setattr(store, "claim_next", claim_when_stopping)
    job_id = enqueue(store)
    dispatcher.start()
    await until(claiming.is_set, "a claim in its thread")
    stopping = asyncio.create_task(dispatcher.stop())
    asyncio.get_running_loop().call_soon(proceed.set)  # runs after stop() has begun
    await stopping
    await until(claimed_in_thread.is_set, "the claim in its thread to finish")
    assert composer.calls == 0
    claimed = real_claim(lease_seconds=60)  # another replica, at once
    assert claimed is not None and claimed.id == job_id


async def test_the_next_attempt_carries_the_checkpoints(tmp_path: Path) -> None:
    composer = FakeComposer()
    store, dispatcher = make(tmp_path, composer)
    job_id = enqueue(store)
    first = store.claim_next(lease_seconds=60)
    assert first is not None
    store.save_checkpoints(job_id, JobCheckpoints(evidence=arxiv_job(job_id)[1].evidence))
    store.release(first, "composer died", retry_in=0)
    dispatcher.start()
    await until(lambda: composer.calls == 1, "the second attempt")
    await dispatcher.stop()
    [request] = composer.requests
    assert request.attempt == 2 and request.checkpoints is not None
    assert request.checkpoints.stages() == ["evidence"]


def lease_expires(store: JobStore, job_id: str) -> float:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return float(
            conn.execute(text("SELECT lease_expires_at FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one()
        )


async def test_the_attempt_after_a_give_back_has_a_number_of_its_own(tmp_path: Path) -> None:
    """A give-back refunds the attempt; its number once came back too, so the given-back attempt's composer (still
    running) and the next one looked the same to the checkpoint fence."""
    composer = FakeComposer(hold=True)
    store, stopping = make(tmp_path, composer)
    job_id = enqueue(store)
    stopping.start()
    await until(lambda: composer.calls == 1, "the first hand-off")
    await stopping.stop()
    _, successor = make(tmp_path, composer)
    successor.start()
    await until(lambda: composer.calls == 2, "the hand-off after the give-back")
    composer.release.set()
    await until(lambda: (view := store.get(job_id)) and view.state == JobState.done, "the job to finish")
    await successor.stop()
    given_back, current = composer.requests
    assert given_back.attempt != current.attempt
    view = store.get(job_id)
    assert view is not None and view.attempts == 1  # still refunded: the give-back cost the job no attempt


async def test_a_wake_during_an_empty_claim_is_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wake of a job accepted while a claim found nothing was cleared after that claim: the job (or a stop())
    then waited a whole poll interval."""
    composer = FakeComposer()
    store, dispatcher = make(tmp_path, composer, DISPATCH_POLL_SECONDS=60)
    claimed_nothing, proceed = threading.Event(), threading.Event()
    real_claim = store.claim_next

    def claim_next(lease_seconds: float, max_claims: int) -> Any:
        found = real_claim(lease_seconds, max_claims)
        if not claimed_nothing.is_set():
            claimed_nothing.set()
            proceed.wait(10)  # the job below is accepted, and its wake sent, before this claim returns
        return found

    monkeypatch.setattr(store, "claim_next", claim_next)
    dispatcher.start()
    await until(claimed_nothing.is_set, "an empty claim")
    job_id = enqueue(store)
    dispatcher.wake()
    proceed.set()
    await until(lambda: (view := store.get(job_id)) and view.state == JobState.done, "the job, well within a poll")
    await asyncio.wait_for(dispatcher.stop(), timeout=10)


async def test_an_unexpected_error_ends_its_attempt_at_once_and_the_claim_cap_ends_the_job(tmp_path: Path) -> None:
    composer = FakeComposer(fails=RuntimeError("a bug on the dispatch path"))
    # A lease of a minute: the three attempts below can only happen if each ends at once, not when its lease runs out.
    store, dispatcher = make(tmp_path, composer, JOB_LEASE_SECONDS=60, JOB_MAX_CLAIMS=3, JOB_RETRY_BASE_SECONDS=0.01)
    job_id = enqueue(store)
    before = given_up("max_claims")
    dispatcher.start()
    await until(lambda: (view := store.get(job_id)) and view.state == JobState.done, "the job to end")
    await dispatcher.stop()
    view = store.get(job_id)
    assert view is not None and view.outcome == Outcome.error
    assert view.error is not None and view.error.startswith("gave up after 3 attempts")
    assert view.error.endswith("hand-off failed: RuntimeError: a bug on the dispatch path")
    assert composer.calls == 3 and composer.requests[-1].final_attempt
    assert given_up("max_claims") == before + 1


async def test_transient_failures_are_retried_through_the_window_and_the_last_attempt_is_final(tmp_path: Path) -> None:
    composer = FakeComposer(fails=ServiceError("composer", "connection refused"))
    # Waits far shorter than the window, so a busy machine still fits many attempts in it (1 s fitted 5 once).
    settings = {
        "JOB_RETRY_WINDOW_SECONDS": 2.0,
        "JOB_RETRY_BASE_SECONDS": 0.01,
        "JOB_RETRY_MAX_SECONDS": 0.04,
        "JOB_MAX_CLAIMS": 1000,  # the cap stays above what the window allows, as its setting says it must
    }
    store, dispatcher = make(tmp_path, composer, **settings)
    job_id = enqueue(store)
    before = given_up("retry_window")
    dispatcher.start()
    await until(lambda: (view := store.get(job_id)) and view.state == JobState.done, "the job to end")
    await dispatcher.stop()
    view = store.get(job_id)
    assert view is not None and view.outcome == Outcome.error and view.error is not None
    assert view.error.startswith(f"gave up after {composer.calls} attempts")
    # Spent by time, not by a count: 0.01 + 0.02 + 0.04 + 0.04 ... fits more than five attempts (the old count).
    assert composer.calls >= 6
    assert [r.final_attempt for r in composer.requests] == [False] * (composer.calls - 1) + [True]
    assert given_up("retry_window") == before + 1


async def test_a_stored_link_composer_would_refuse_ends_error_without_being_sent(tmp_path: Path) -> None:
    composer = FakeComposer()
    store, dispatcher = make(tmp_path, composer, JOB_LEASE_SECONDS=60)
    job_id = enqueue(store, "http://example.com:99999/x")  # stored before ingest checked links
    before = given_up("unfit")
    dispatcher.start()
    await until(lambda: (view := store.get(job_id)) and view.state == JobState.done, "the job to end")
    await dispatcher.stop()
    view = store.get(job_id)
    assert view is not None and view.outcome == Outcome.error and view.error is not None
    assert view.error.startswith("no valid request for composer:")
    assert composer.calls == 0 and given_up("unfit") == before + 1


def _counted(outcome: str, gate: str) -> tuple[float, float]:
    jobs = REGISTRY.get_sample_value("technoshare_jobs_total", {"service": "ingest", "outcome": outcome}) or 0.0
    fallbacks = REGISTRY.get_sample_value("technoshare_reply_fallbacks_total", {"gate": gate}) or 0.0
    return jobs, fallbacks


class FallbackComposer(FakeComposer):
    """Answers with the extractive fallback, the draft refused by the grounding gate."""

    async def post(self, path: str, request: JobRunRequest, model: type[Any], **_: Any) -> ComposeResult:
        result = await super().post(path, request, model)
        return result.model_copy(update={"refused_gates": [GateResult(name="grounded", passed=False, detail="x")]})


async def test_a_job_is_counted_once_when_its_outcome_is_stored_and_never_by_a_stale_attempt(tmp_path: Path) -> None:
    composer = FallbackComposer(hold=True)
    store, dispatcher = make(tmp_path, composer)
    first_job = enqueue(store)
    before = _counted("success", "grounded")
    dispatcher.start()
    await until(lambda: composer.calls == 1, "the hand-off")
    # Another replica took the job over and finished it first: this attempt's lease token no longer holds it.
    from sqlalchemy import text

    with store.engine.begin() as conn:
        taken = "UPDATE jobs SET lease_token = 'another-replica', state = 'done', outcome = 'success' WHERE id = :id"
        conn.execute(text(taken), {"id": first_job})
    composer.release.set()  # the stale attempt's answer arrives: its outcome is not stored, so not counted
    await until(lambda: dispatcher._tasks == set(), "the stale hand-off to end")
    assert _counted("success", "grounded") == before
    second_job = enqueue(store, "https://example.com/b")
    await until(lambda: (view := store.get(second_job)) and view.state == JobState.done, "the second job")
    await dispatcher.stop()
    assert _counted("success", "grounded") == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_refusal_a_rollout_can_cause_is_retried_through_the_window_not_given_up_at_once(
    tmp_path: Path, status: int
) -> None:
    """A new ingest and an old composer (a token, a route not there yet) refuse each other until the rollout ends."""
    composer = FakeComposer(fails=ServiceError("composer", "refused", status_code=status))
    settings = {"JOB_RETRY_WINDOW_SECONDS": 0.6, "JOB_RETRY_BASE_SECONDS": 0.05, "JOB_RETRY_MAX_SECONDS": 0.1}
    store, dispatcher = make(tmp_path, composer, **settings)
    job_id = enqueue(store)
    before = given_up("retry_window"), given_up("rejected")
    dispatcher.start()
    await until(lambda: (view := store.get(job_id)) and view.state == JobState.done, "the job to end")
    await dispatcher.stop()
    assert composer.calls > 1
    assert (given_up("retry_window"), given_up("rejected")) == (before[0] + 1, before[1])
