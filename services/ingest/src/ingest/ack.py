"""The job store as Slack's acks use it: bounded in time and in queue, so a hung database costs a 503, not 3 s."""

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import HTTPException, status
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from ingest.settings import IngestSettings
from ingest.slack_events import SharedLink
from ingest.store import JobStore, job_key

log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUE_PER_THREAD = 8  # store calls allowed to wait per ack thread before new events get 503 at once
MAX_BATCH = 256  # links stored by one insert
MAX_PENDING_LINKS = 4096  # links waiting for the next insert before new events get 503 at once
KNOWN_JOBS = 20000  # jobs this process stored lately, by key: Slack's retries of them need no database

Pending = tuple[tuple[SharedLink, str | None, str | None], "asyncio.Future[tuple[str, bool]]"]


class StoreUnavailable(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail)


class AckStore:
    """Runs the ack path's store calls on threads of their own (a busy dispatcher never queues them). A call not done
    within ACK_STORE_TIMEOUT_SECONDS, or one that would queue behind too many, is StoreUnavailable (503): Slack then
    delivers the event again, and the store's dedup makes the redelivery and a late-finishing first call one job."""

    def __init__(self, settings: IngestSettings, store: JobStore) -> None:
        self.timeout = settings.ack_store_timeout_seconds
        self.limit = settings.ack_threads * QUEUE_PER_THREAD
        self.executor = ThreadPoolExecutor(settings.ack_threads, thread_name_prefix="ack")
        self.waiting = 0
        self.store = store
        self._pending: list[Pending] = []
        self._storing: asyncio.Task[None] | None = None
        self._known: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    async def enqueue(
        self, link: SharedLink, event_id: str | None, problem: str | None, *, deadline: float
    ) -> tuple[str, bool]:
        """(job id, created) for a shared link, by `deadline` (the event loop's time) or StoreUnavailable.

        Group commit: the links that arrive while one insert runs are stored together by the next, so the database
        work per link shrinks as the load grows (one insert a link cost 500 acks/s their 3 s on PostgreSQL). A link
        this process stored lately (Slack's retry of a slow ack) is answered from memory."""
        key = job_key(link)
        if (known := self._known.get(key)) is not None:
            return known, False
        if len(self._pending) >= MAX_PENDING_LINKS:
            raise StoreUnavailable(f"{len(self._pending)} links already wait for the job store")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[str, bool]] = loop.create_future()
        future.add_done_callback(_retrieved)  # a waiter past its deadline no longer reads a late failure
        self._pending.append(((link, event_id, problem), future))
        if self._storing is None or self._storing.done():
            self._storing = asyncio.create_task(self._store_pending(), name="ack-inserts")
        return await self._within(future, max(0.0, deadline - loop.time()))

    async def _store_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            await self._store(batch)

    async def _store(self, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            links = [item for item, _ in batch]
            results = await loop.run_in_executor(self.executor, self.store.enqueue_many, links)
        except (DataError, IntegrityError) as exc:
            # One link's own fault (text PostgreSQL refuses): stored one by one, the others do not share it.
            if len(batch) == 1:
                _fail(batch, exc)
            else:
                for one in batch:
                    await self._store([one])
            return
        except Exception as exc:  # every waiter gets it (a 503); the next batch tries again
            _fail(batch, exc)
            return
        for ((link, _, _), future), result in zip(batch, results, strict=True):
            self._remember(job_key(link), result[0])
            if not future.done():  # a waiter past its deadline has answered 503 already
                future.set_result(result)

    def _remember(self, key: tuple[str, str, str], job_id: str) -> None:
        self._known[key] = job_id
        self._known.move_to_end(key)
        if len(self._known) > KNOWN_JOBS:
            self._known.popitem(last=False)

    async def call(self, function: Callable[..., T], *args: Any, deadline: float | None = None) -> T:
        """`deadline`: the event loop's time by which the whole ack must be done (a message's links share it)."""
        loop = asyncio.get_running_loop()
        timeout = self.timeout if deadline is None else max(0.0, deadline - loop.time())
        if self.waiting >= self.limit:
            raise StoreUnavailable(f"{self.waiting} acks already wait for the job store")
        self.waiting += 1
        future = loop.run_in_executor(self.executor, function, *args)
        future.add_done_callback(self._finished)
        return await self._within(future, timeout)

    async def _within(self, future: "asyncio.Future[T]", seconds: float) -> T:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=seconds)
        except TimeoutError as exc:
            log.error("the job store did not answer an ack in time", extra={"timeout": self.timeout})
            raise StoreUnavailable(f"the job store did not answer within {self.timeout} s") from exc
        except SQLAlchemyError as exc:
            log.error("the job store failed an ack", extra={"error": type(exc).__name__})
            raise StoreUnavailable("the job store is unavailable") from exc

    def _finished(self, _: object) -> None:
        self.waiting -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)


def _retrieved(future: "asyncio.Future[Any]") -> None:
    if not future.cancelled():
        future.exception()


def _fail(batch: list[Pending], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
