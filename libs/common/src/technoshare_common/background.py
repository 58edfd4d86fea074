"""Work handed to a daemon thread through a bounded queue: the caller never waits, and a full queue drops."""

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class BackgroundSender(Generic[T]):
    """Sends items one by one with `send` on its own thread; `send`'s failures are logged, never raised."""

    def __init__(self, name: str, send: Callable[[T], None], capacity: int = 1000) -> None:
        self.name = name
        self._send = send
        self._queue: queue.Queue[T | threading.Event] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    def submit(self, item: T) -> bool:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            log.warning("background queue full; item dropped", extra={"queue": self.name, "dropped": self.dropped})
            return False
        return True

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until what was submitted before this call has been sent (or the timeout passes)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._send(item)
            except Exception as exc:
                log.warning("background send failed", extra={"queue": self.name, "error": str(exc)[:300]})
