"""The job store as Slack's acks use it: bounded in time and in queue, so a hung database costs a 503, not 3 s."""

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import HTTPException, status
from sqlalchemy.exc import SQLAlchemyError

from ingest.settings import IngestSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUE_PER_THREAD = 8  # store calls allowed to wait per ack thread before new events get 503 at once


class StoreUnavailable(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail)


class AckStore:
    """Runs the ack path's store calls on threads of their own (a busy dispatcher never queues them). A call not done
    within ACK_STORE_TIMEOUT_SECONDS, or one that would queue behind too many, is StoreUnavailable (503): Slack then
    delivers the event again, and the store's dedup makes the redelivery and a late-finishing first call one job."""

    def __init__(self, settings: IngestSettings) -> None:
        self.timeout = settings.ack_store_timeout_seconds
        self.limit = settings.ack_threads * QUEUE_PER_THREAD
        self.executor = ThreadPoolExecutor(settings.ack_threads, thread_name_prefix="ack")
        self.waiting = 0

    async def call(self, function: Callable[..., T], *args: Any, deadline: float | None = None) -> T:
        """`deadline`: the event loop's time by which the whole ack must be done (a message's links share it)."""
        loop = asyncio.get_running_loop()
        timeout = self.timeout if deadline is None else max(0.0, deadline - loop.time())
        if self.waiting >= self.limit:
            raise StoreUnavailable(f"{self.waiting} acks already wait for the job store")
        self.waiting += 1
        future = loop.run_in_executor(self.executor, function, *args)
        future.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=timeout)
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
