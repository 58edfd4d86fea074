"""Records kept on disk until MLflow takes them: what could not be sent is never lost, and never waited for.

Writing a record costs the caller one small file. A daemon thread sends the files oldest first and deletes
each once it is sent; while MLflow is down or hangs they wait, with a growing pause between attempts,
and they survive a restart of the process.

The spools of a process share one volume (MLFLOW_SPOOL_DIR; composer keeps two spools there), and a full volume
gets the pod evicted with every record on it. So the volume has a budget (SpoolVolume, SPOOL_MAX_BYTES, below the
volume's size): when a new record would pass it, the oldest records are dropped, counted in
technoshare_mlflow_spool_dropped_total. Set-aside records (*.rejected, *.bad) are pruned after
SPOOL_KEEP_REJECTED_HOURS.
"""

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

SPOOL_BACKLOG = Gauge("technoshare_mlflow_spool_backlog", "Records waiting in the spool for MLflow, by kind.", ["kind"])
SPOOL_RECORDS = Counter(
    "technoshare_mlflow_spool_records_total",
    "Spooled records by kind and result: sent, deferred, rejected, spool_failed, unreadable.",
    ["kind", "result"],
)
SPOOL_REJECTED = Counter(
    "technoshare_mlflow_spool_rejected_total",
    "Records MLflow refused with a 4xx, set aside and not retried, by kind and HTTP status.",
    ["kind", "status"],
)
SPOOL_SET_ASIDE = Gauge(
    "technoshare_mlflow_spool_set_aside",
    "Records set aside on disk (*.rejected, *.bad) for an operator to look at, by kind.",
    ["kind"],
)

SPOOL_DROPPED = Counter(
    "technoshare_mlflow_spool_dropped_total",
    "Records dropped unsent, oldest first, to keep the spool's volume under SPOOL_MAX_BYTES, by kind.",
    ["kind"],
)

REJECTION_STATUSES = ("400", "403", "404", "409", "499")
"""The 4xx statuses MLflow's client reports a refusal with (any other status arrives as 500). Their series
start at 0, so that the first refusal is an increase an alert can see."""

Record = dict[str, Any]
Send = Callable[[Record], Record | None]
"""Sends one record; returns the record that should wait in its place (a follow-up step), or None when done."""

MAX_PAUSE_SECONDS = 30.0


class Deferred(Exception):
    """This record cannot be sent yet (it waits on another one); the records after it still go."""


def http_status(exc: Exception) -> int:
    """The HTTP status MLflow's client reports; connection failures count as 5xx, and wait for MLflow."""
    return exc.get_http_status_code() if hasattr(exc, "get_http_status_code") else 500


def rejected_by_mlflow(exc: Exception) -> bool:
    """A 4xx from MLflow other than 'try again later': retrying cannot help, so the record is set aside.

    401 waits like a 5xx: it says who is calling is unknown (credentials not set up yet, as in the minutes before the
    chart's mlflow-users Job has run, or rotated), true of every record alike and fixed without touching them."""
    status = http_status(exc)
    return 400 <= status < 500 and status not in (401, 408, 429)


class SpoolVolume:
    """The bytes all spools under `root` may hold together, and how long their set-aside records are kept.

    Configured once per process (`configure`, from create_app); a spool under a configured root finds its volume
    itself. The usage is counted as records are written and rescanned when it nears the budget, so a write costs no
    walk of the volume in the common case."""

    _configured: "dict[Path, SpoolVolume]" = {}
    _registry_lock = threading.Lock()

    def __init__(self, root: Path, max_bytes: int, keep_set_aside_seconds: float) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.keep_set_aside_seconds = keep_set_aside_seconds
        self.kinds: dict[Path, str] = {}  # each spool's directory -> its kind, for the dropped counter
        self.used: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def configure(cls, root: Path, max_bytes: int, keep_set_aside_hours: float) -> "SpoolVolume":
        with cls._registry_lock:
            volume = cls._configured[root.resolve()] = SpoolVolume(root, max_bytes, keep_set_aside_hours * 3600)
        return volume

    @classmethod
    def of(cls, directory: Path) -> "SpoolVolume | None":
        resolved = directory.resolve()
        with cls._registry_lock:
            found = [root for root in cls._configured if resolved == root or root in resolved.parents]
            return cls._configured[max(found, key=lambda root: len(root.parts))] if found else None

    def _scan(self) -> list[tuple[str, Path, int]]:
        """Every file under the root with its size, and the records ((name, path, size) of *.json) oldest first."""
        total, records = 0, []
        for path in self.root.rglob("*"):
            try:
                size = path.stat().st_size if path.is_file() else 0
            except OSError:  # sent and deleted meanwhile
                continue
            total += size
            if path.suffix == ".json":
                records.append((path.name, path, size))
        self.used = total
        return sorted(records)

    def make_room(self, needed: int) -> None:
        """Drops the oldest records until `needed` more bytes fit in the budget, with a tenth of it to spare: a full
        volume is then walked once per tenth written, not on every write."""
        with self._lock:
            if self.used is not None and self.used + needed <= self.max_bytes:
                self.used += needed
                return
            records = self._scan()
            target = self.max_bytes - self.max_bytes // 10
            dropped: dict[str, int] = {}
            for _, path, size in records:
                assert self.used is not None
                if self.used + needed <= target:
                    break
                path.unlink(missing_ok=True)
                self.used -= size
                kind = self.kinds.get(path.parent.resolve(), "unknown")
                dropped[kind] = dropped.get(kind, 0) + 1
            for kind, count in dropped.items():
                SPOOL_DROPPED.labels(kind).inc(count)
                log.error(
                    "the spool's volume is full; the oldest records were dropped unsent",
                    extra={"kind": kind, "dropped": count, "max_bytes": self.max_bytes},
                )
            if self.used is not None:
                self.used += needed

    def forget(self, size: int) -> None:
        """A record sent and deleted."""
        with self._lock:
            if self.used is not None:
                self.used = max(0, self.used - size)


class DiskSpool:
    def __init__(self, directory: Path, kind: str, send: Send) -> None:
        self.directory = directory
        self.kind = kind
        self._send = send
        self.volume: SpoolVolume | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = True

    def start(self) -> None:
        if self._thread is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # Found at start, not construction: create_app configures the volumes as the process starts.
        self.volume = SpoolVolume.of(self.directory)
        if self.volume is not None:
            self.volume.kinds[self.directory.resolve()] = self.kind
        SPOOL_BACKLOG.labels(self.kind).set_function(self.backlog)
        SPOOL_SET_ASIDE.labels(self.kind).set_function(self.set_aside)
        for status in REJECTION_STATUSES:
            SPOOL_REJECTED.labels(self.kind, status)
        self._thread = threading.Thread(target=self._drain_forever, name=f"mlflow-spool-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Try now rather than after the current pause (a test, or an operator who knows MLflow is back)."""
        self._wake.set()

    def backlog(self) -> int:
        return sum(1 for _ in self.directory.glob("*.json")) if self.directory.exists() else 0

    def set_aside(self) -> int:
        return sum(1 for _ in self.directory.glob("*.rejected")) + sum(1 for _ in self.directory.glob("*.bad"))

    def reject(self, exc: Exception, **context: Any) -> None:
        """Counts and logs a record MLflow refused. Loud on purpose: a refusal (Host header not allowed,
        authentication, a payload it does not accept) usually repeats for every record until its cause is fixed.

        The log carries MLflow's answer (the endpoint and the server's message), never the record.
        """
        status = str(http_status(exc))
        SPOOL_REJECTED.labels(self.kind, status).inc()
        SPOOL_RECORDS.labels(self.kind, "rejected").inc()
        log.error(
            "MLflow refused a record with HTTP %s; it is not retried",
            status,
            extra={"kind": self.kind, "status": status, "error": str(exc)[:500], **context},
        )

    def put(self, record: Record) -> bool:
        """Keeps the record for sending; never raises, so the caller's work cannot fail on it."""
        try:
            data = json.dumps(record, ensure_ascii=False)
            if self.volume is not None:
                self.volume.make_room(len(data.encode()))
            self._write_text(data, self.directory / f"{time.time_ns()}.json")
        except (OSError, TypeError, ValueError) as exc:
            SPOOL_RECORDS.labels(self.kind, "spool_failed").inc()
            log.error("could not spool a record for MLflow", extra={"kind": self.kind, "error": str(exc)[:300]})
            return False
        self._wake.set()
        return True

    def _write(self, record: Record, path: Path) -> None:
        self._write_text(json.dumps(record, ensure_ascii=False), path)

    def _write_text(self, data: str, path: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.directory, suffix=".tmp", delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, path)

    def prune_set_aside(self) -> int:
        """Deletes set-aside records older than the volume's SPOOL_KEEP_REJECTED_HOURS; how many."""
        if self.volume is None or not self.directory.exists():
            return 0
        oldest = time.time() - self.volume.keep_set_aside_seconds
        pruned = 0
        for pattern in ("*.rejected", "*.bad"):
            for path in self.directory.glob(pattern):
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < oldest:
                        path.unlink()
                        pruned += 1
        if pruned:
            log.info("pruned old set-aside records", extra={"kind": self.kind, "pruned": pruned})
        return pruned

    def _drain_forever(self) -> None:
        pause = 2.0
        while not self._stop.is_set():
            if self.drain_once():
                pause = 2.0
                self._wake.wait()
            else:
                self._wake.wait(pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
            self._wake.clear()

    def drain_once(self) -> bool:
        """Sends every spooled record, oldest first; False when MLflow failed (the rest wait) or one was deferred."""
        all_sent = True
        self.prune_set_aside()
        for path in sorted(self.directory.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                SPOOL_RECORDS.labels(self.kind, "unreadable").inc()
                log.error("unreadable spooled record set aside", extra={"file": path.name, "error": str(exc)})
                path.rename(path.with_suffix(".bad"))
                continue
            try:
                follow_up = self._send(record)
            except Deferred:
                all_sent = False
                continue
            except Exception as exc:
                if rejected_by_mlflow(exc):
                    set_aside = path.rename(path.with_suffix(".rejected"))
                    self.reject(exc, record_kind=record.get("kind"), file=set_aside.name)
                    continue
                SPOOL_RECORDS.labels(self.kind, "deferred").inc()
                if self.available:
                    log.warning(
                        "MLflow is unavailable; records wait in the spool until it is back",
                        extra={"kind": self.kind, "error": str(exc)[:300], "backlog": self.backlog()},
                    )
                self.available = False
                return False
            if follow_up is None:
                with contextlib.suppress(OSError):
                    size = path.stat().st_size
                    path.unlink()
                    if self.volume is not None:
                        self.volume.forget(size)
                SPOOL_RECORDS.labels(self.kind, "sent").inc()
            else:
                self._write(follow_up, path)
                all_sent = False
            if not self.available:
                log.info("MLflow is back; sending the spooled records", extra={"kind": self.kind})
                self.available = True
        return all_sent
