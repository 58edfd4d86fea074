"""Hands durable jobs to composer: at least once under a lease, answered once thanks to poster.

A job is claimed under a short lease (timed on the database's clock) that a heartbeat renews while
composer works, so a dead ingest's jobs move on within a lease. A transient failure (composer down,
slow or killed mid-job) gives the job back with capped exponential backoff, for as long as the retry
window (JOB_RETRY_WINDOW_SECONDS) since the link arrived allows; the last attempt inside the window
is marked final, so composer answers it with the degraded reply or the notice rather than nothing.
An unexpected error ends its attempt at once, and a job claimed JOB_MAX_CLAIMS times is never
handed out again: it ends `error`, counted in technoshare_jobs_given_up_total. A graceful shutdown
gives its jobs back at once. The claim loop itself is supervised: a failing database is logged and
retried with backoff, and readiness says so meanwhile.
"""

import asyncio
import contextlib
import logging
import random
import time

from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from ingest.settings import IngestSettings
from ingest.store import ClaimedJob, JobStore
from technoshare_common.context import job_id_var
from technoshare_common.http import ServiceClient, ServiceError
from technoshare_common.metrics import JOBS, REPLY_FALLBACKS
from technoshare_common.schemas import ComposeResult, JobRunRequest, NoticeRunRequest
from technoshare_common.tracing import tracer

log = logging.getLogger(__name__)

DISPATCH_ATTEMPTS = Counter(
    "technoshare_dispatch_attempts_total", "Hand-offs of a job to composer, by result.", ["result"]
)
JOBS_IN_FLIGHT = Gauge("technoshare_jobs_in_flight", "Jobs currently handed to composer by this ingest.")
DISPATCH_LOOP_ERRORS = Counter(
    "technoshare_dispatch_loop_errors_total", "Failed claims of the next job (database down, connection lost)."
)
JOBS_GIVEN_UP = Counter(
    "technoshare_jobs_given_up_total",
    "Jobs ended `error` with no reply and no notice, by why: composer rejected them (rejected), transient failures "
    "outlasted JOB_RETRY_WINDOW_SECONDS (retry_window), they were claimed JOB_MAX_CLAIMS times (max_claims), or "
    "no valid request could be built from them (unfit).",
    ["reason"],
)


SKEW_STATUSES = frozenset({401, 403, 404})


def _first_line(exc: BaseException) -> str:
    """The exception's class and first line only: a driver's message can carry connection details."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {message}"[:200]


class Dispatcher:
    def __init__(self, store: JobStore, settings: IngestSettings, composer: ServiceClient) -> None:
        self.store = store
        self.settings = settings
        self.composer = composer
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.dispatch_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._claim_error: str | None = None
        self._swept_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._loop = asyncio.create_task(self.run(), name="dispatcher")

    async def check_health(self) -> None:
        """Readiness: fails while the claim loop is dead or its claims keep failing."""
        if self._loop is None or self._loop.done():
            raise RuntimeError("the dispatcher is not running")
        if self._claim_error is not None:
            raise RuntimeError(f"claiming jobs fails: {self._claim_error}")

    async def run(self) -> None:
        """Claim and hand off due jobs until stopped; no error ends the loop."""
        failures = 0
        while not self._stopping:
            await self._slots.acquire()
            if self._stopping:
                self._slots.release()
                break
            # Cleared before the claim, not after it: a wake() or stop() while an empty claim runs is not lost
            # (it once was, leaving a new job, or a shutdown, waiting a whole poll interval).
            self._wake.clear()
            try:
                job = await asyncio.to_thread(self._claim)
            except Exception as exc:
                self._slots.release()
                failures += 1
                DISPATCH_LOOP_ERRORS.inc()
                self._claim_error = _first_line(exc)
                delay = min(
                    self.settings.dispatch_backoff_max_seconds,
                    self.settings.dispatch_poll_seconds * 2 ** (failures - 1),
                )
                log.error("claiming a job failed", extra={"error": self._claim_error, "retry_in": round(delay, 2)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), timeout=delay)
                continue
            if failures:
                log.info("claiming jobs works again", extra={"failures": failures})
            failures, self._claim_error = 0, None
            if job is None:
                self._slots.release()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.dispatch_poll_seconds)
                continue
            if self._stopping:  # claimed while stop() ran: give it back, never start a hand-off no one awaits
                self._slots.release()
                await self._give_back(job)
                break
            task = asyncio.create_task(self._dispatch(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _claim(self) -> ClaimedJob | None:
        """The next job, after ending (at most once per poll interval) the jobs past their claim cap."""
        now = time.monotonic()
        if now - self._swept_at >= self.settings.dispatch_poll_seconds:
            self._swept_at = now
            if ended := self.store.end_overclaimed(self.settings.max_claims):
                JOBS_GIVEN_UP.labels("max_claims").inc(ended)
                JOBS.labels("ingest", "error").inc(ended)
                log.error("jobs ended after too many claims", extra={"jobs": ended, "max": self.settings.max_claims})
        return self.store.claim_next(self.settings.lease_seconds, self.settings.max_claims)

    async def stop(self) -> None:
        """Stop claiming and give the jobs in flight back at once, so a rolling deploy delays none by a lease.

        The claim loop is let finish rather than cancelled: a claim already running in its thread would otherwise
        take a job whose result nobody reads, leaving it leased to no one until the lease ran out."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._loop is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop), timeout=self.settings.lease_seconds)
            except TimeoutError:  # a claim hung on the database: its job's lease runs out instead
                self._loop.cancel()
                await asyncio.gather(self._loop, return_exceptions=True)

    async def _dispatch(self, job: ClaimedJob) -> None:
        token = job_id_var.set(job.id)
        JOBS_IN_FLIGHT.inc()
        heartbeat = asyncio.create_task(self._keep_lease(job))
        try:
            await self._hand_off(job)
        except asyncio.CancelledError:
            await self._give_back(job)
            raise
        except Exception as exc:
            # Ends this attempt now, not when its lease runs out; its claim counts towards JOB_MAX_CLAIMS.
            log.exception("hand-off failed unexpectedly; the attempt ends here")
            await self._end_or_retry(job, f"hand-off failed: {_first_line(exc)}", self._is_final(job))
        finally:
            heartbeat.cancel()
            JOBS_IN_FLIGHT.dec()
            job_id_var.reset(token)
            self._slots.release()

    async def _keep_lease(self, job: ClaimedJob) -> None:
        """Renew the job's lease every third of it; a short lease then only expires when this replica dies."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                held = await asyncio.to_thread(self.store.extend_lease, job, self.settings.lease_seconds)
            except Exception as exc:
                log.warning("lease renewal failed", extra={"error": type(exc).__name__})
                continue
            if not held:
                log.warning("lease lost to another replica; its outcome will be theirs")
                return

    async def _give_back(self, job: ClaimedJob) -> None:
        try:
            await asyncio.to_thread(self.store.abandon, job)
            log.info("job given back at shutdown")
        except Exception as exc:
            log.warning("could not give the job back; its lease will expire", extra={"error": type(exc).__name__})

    def _backoff(self, attempts: int) -> float:
        return min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** (attempts - 1))

    def _is_final(self, job: ClaimedJob) -> bool:
        """No attempt after this one: the next would start past the retry window, or past the claim cap."""
        next_start = job.age_seconds + self._backoff(job.attempts)
        return next_start > self.settings.retry_window_seconds or job.claim >= self.settings.max_claims

    async def _hand_off(self, job: ClaimedJob) -> None:
        final = self._is_final(job)
        request: JobRunRequest | NoticeRunRequest
        path = "/v1/jobs"
        # The claim's number is the attempt's: unique to this hand-off even after a refunded give-back, so ingest
        # refuses the checkpoints of any other (stale) attempt.
        common = {
            "job_id": job.id,
            "channel_id": job.channel_id,
            "message_ts": job.message_ts,
            "thread_ts": job.thread_ts,
            "url": job.url,
            "attempt": job.claim,
        }
        try:
            if job.link_problem is not None:  # refused at ingest: composer answers it with the notice only
                path = "/v1/notices"
                request = NoticeRunRequest.model_validate(common | {"problem": job.link_problem})
            else:
                extra = {"slack_text": job.slack_text, "final_attempt": final, "checkpoints": job.checkpoints}
                request = JobRunRequest.model_validate(common | extra)
        except ValidationError as exc:  # a row stored before ingest validated links: it can never be sent
            await self._give_up(job, "unfit", f"no valid request for composer: {exc.errors()[0]['msg']}")
            return
        resumed = job.checkpoints.stages() if job.checkpoints else []
        log.info("dispatching job", extra={"attempt": job.claim, "url": job.url, "resumes_after": resumed})
        attributes = {"job_id": job.id, "attempt": job.claim, "url": job.url, "channel_id": job.channel_id}
        try:
            # The job's trace starts here; composer, retrieval, llm-gateway and poster continue it.
            with tracer.span("ingest.dispatch_job", span_type="CHAIN", attributes=attributes) as span:
                tracer.tag_trace(job_id=job.id, channel_id=job.channel_id)
                # A Slack thread is the trace's session: its reply, follow-ups and retries are found together.
                tracer.identify_trace(session=f"{job.channel_id}:{job.thread_ts}", user=job.user_pseudonym)
                result = await self.composer.post(
                    path, request, ComposeResult, request_timeout=self.settings.composer_timeout_seconds
                )
                span.set_attributes({"outcome": result.outcome.value})
                tracer.link_trace_to_model(result.app_version_id)
        except ServiceError as exc:
            await self._after_failure(job, exc, final)
            return
        DISPATCH_ATTEMPTS.labels("completed").inc()
        if await asyncio.to_thread(self.store.complete, job, result):
            # Counted here, once per job and after its outcome is stored: the alerts and the dashboard read these.
            JOBS.labels("ingest", result.outcome.value).inc()
            if result.refused_gates:
                REPLY_FALLBACKS.labels(result.refused_gates[0].name).inc()
            log.info("job finished", extra={"outcome": result.outcome.value, "error": result.error})
        else:
            log.warning("job finished after its lease was taken over; outcome left to the new attempt")

    async def _after_failure(self, job: ClaimedJob, exc: ServiceError, final: bool) -> None:
        # 401/403/404 from composer are a rollout's version skew (a new token, a route not there yet) as often as a
        # misconfiguration: retried through the window, then given up and alerted on, rather than lost at once.
        if not exc.retryable and exc.status_code not in SKEW_STATUSES:
            DISPATCH_ATTEMPTS.labels("rejected").inc()
            await self._give_up(job, "rejected", f"composer rejected the job: {exc}")
            return
        await self._end_or_retry(job, str(exc), final)

    async def _end_or_retry(self, job: ClaimedJob, error: str, final: bool) -> None:
        if final:
            DISPATCH_ATTEMPTS.labels("exhausted").inc()
            reason = "max_claims" if job.claim >= self.settings.max_claims else "retry_window"
            waited = round(job.age_seconds)
            await self._give_up(job, reason, f"gave up after {job.attempts} attempts over {waited} s; last: {error}")
            return
        DISPATCH_ATTEMPTS.labels("retry").inc()
        await self._retry_later(job, error)

    async def _retry_later(self, job: ClaimedJob, error: str) -> None:
        delay = self._backoff(job.attempts) * random.uniform(0.8, 1.2)
        try:
            held = await asyncio.to_thread(self.store.release, job, error, delay)
        except Exception as exc:
            log.warning("could not give the job back; its lease will expire", extra={"error": type(exc).__name__})
            return
        if held:
            log.warning("job handed back for retry", extra={"retry_in": round(delay, 2), "error": error})

    async def _give_up(self, job: ClaimedJob, reason: str, error: str) -> None:
        """The job's end without a reply: counted once, after the outcome is stored."""
        if await asyncio.to_thread(self.store.fail, job, error):
            JOBS_GIVEN_UP.labels(reason).inc()
            JOBS.labels("ingest", "error").inc()
            log.error("job failed for good", extra={"reason": reason, "attempts": job.attempts, "error": error})
