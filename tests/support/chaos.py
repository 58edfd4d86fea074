"""Load and failure for the process stack: Slack's steady traffic (with its retries), a Service-like TCP proxy, and
the tally of what every accepted event became."""

import contextlib
import itertools
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tests.support.servers import ServiceProcess
from tests.support.stack import IngestClient, Stack

# The scripted LLM writes about LoRA: a reply to another paper would fail the grounding gate.
LINK = "https://arxiv.org/abs/2106.09685"


def wait_ready(service: ServiceProcess, timeout: float = 180.0) -> None:
    """Until /readyz answers 200 (the process can serve: its own database and state), as a Deployment waits."""
    service.wait_answering("/readyz", timeout, interval=0.2, request_timeout=5)


@dataclass
class SentEvent:
    ts: str
    payload: dict[str, Any]
    deliveries: int = 0
    accepted: bool = False


@dataclass
class SlackTraffic:
    """Slack's side: `rate` signed message events a second, each with one link, for `seconds` or until stop().

    As Slack does, an event that is not acknowledged with a 200 (ingest down, a 5xx, a timeout) is delivered again
    with `X-Slack-Retry-Num`; every `duplicate_every`-th event is delivered twice even when acknowledged (Slack
    retries when an ack is slow). Redeliveries go on until acknowledged or `retry_for` seconds have passed.
    """

    client: IngestClient
    rate: float
    seconds: float
    text: str = "look"  # before the link: markers steer the scripted LLM (tests/support/scripted_llm.py)
    duplicate_every: int = 7
    retry_for: float = 90.0
    retry_pause: float = 1.0
    events: list[SentEvent] = field(default_factory=list)
    duplicates: int = 0
    refused_deliveries: int = 0
    _done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        threading.Thread(target=self._run, name="slack-traffic", daemon=True).start()

    def stop(self) -> None:
        """No new events from now on; those sent are still delivered until acknowledged (wait() for them)."""
        self._stop.set()

    def wait(self, timeout: float) -> None:
        assert self._done.wait(timeout), "Slack's traffic did not finish"

    def sent(self) -> int:
        with self._lock:
            return len(self.events)

    def _run(self) -> None:
        try:
            with ThreadPoolExecutor(16, thread_name_prefix="slack") as pool:
                start = time.monotonic()
                for index in itertools.count():
                    due = start + index / self.rate
                    if due - start >= self.seconds or self._stop.wait(max(0.0, due - time.monotonic())):
                        break
                    ts = f"{time.time():.6f}"
                    payload = self.client.message_event(f"{self.text} <{LINK}>", ts=ts)
                    event = SentEvent(ts, payload)
                    with self._lock:
                        self.events.append(event)
                    pool.submit(self._deliver, event, index % self.duplicate_every == 0)
        finally:
            self._done.set()

    def _deliver(self, event: SentEvent, duplicate: bool) -> None:
        deadline = time.monotonic() + self.retry_for
        while not event.accepted and time.monotonic() < deadline:
            if not self._post(event):
                with self._lock:
                    self.refused_deliveries += 1
                time.sleep(self.retry_pause)
        if event.accepted and duplicate and self._post(event, reason="http_timeout"):
            with self._lock:
                self.duplicates += 1

    def _post(self, event: SentEvent, reason: str = "http_error") -> bool:
        headers = {"x-slack-retry-num": str(event.deliveries), "x-slack-retry-reason": reason}
        event.deliveries += 1
        try:
            response = self.client.slack_request(event.payload, headers=headers if event.deliveries > 1 else None)
        except httpx.HTTPError:
            return False
        if response.status_code == 200:
            event.accepted = True
            return True
        return False


class ServiceProxy:
    """A TCP proxy standing in for a Kubernetes Service: each new connection goes to one of the ready backends.

    Connections already open stay with their backend, as they do behind kube-proxy, until either side closes them.
    `freeze` stops forwarding in both directions with every connection left open (a network that silently drops
    packets); `thaw` delivers what waited.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listener = socket.create_server((host, port))
        self.host, self.port = host, self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._backends: list[int] = []
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def route_to(self, *ports: int) -> None:
        with self._lock:
            self._backends = list(ports)

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._flowing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                backends = list(self._backends)
            if not backends:
                downstream.close()
                continue
            port = backends[next(self._next) % len(backends)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {downstream, upstream}
            for source, target in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                self._flowing.wait()
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets -= {source, target}
            source.close()


@dataclass(frozen=True)
class JobRow:
    id: str
    message_ts: str
    state: str
    outcome: str | None
    created_at: float
    finished_at: float | None


def job_rows(database_url: str) -> list[JobRow]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, message_ts, state, outcome, created_at, finished_at FROM jobs")).all()
    finally:
        engine.dispose()
    return [JobRow(*row) for row in rows]


def wait_all_done(database_url: str, traffic: SlackTraffic, timeout: float) -> list[JobRow]:
    """The jobs once every acknowledged event's job has ended (as a reply or a recorded outcome), or as they are at
    the timeout: the tally then counts what never ended as lost."""
    accepted = {event.ts for event in traffic.events if event.accepted}
    deadline = time.monotonic() + timeout
    while True:
        rows = job_rows(database_url)
        covered = {row.message_ts for row in rows}
        if (accepted <= covered and all(row.state == "done" for row in rows)) or time.monotonic() > deadline:
            return rows
        time.sleep(1.0)


@dataclass(frozen=True)
class Tally:
    events: int
    accepted: int
    jobs: int
    replies: int
    outcomes: dict[str, int]
    lost: list[str]
    doubled: list[str]

    def summary(self) -> str:
        return (
            f"events={self.events} accepted={self.accepted} jobs={self.jobs} replies={self.replies} "
            f"outcomes={self.outcomes} lost={len(self.lost)} doubled={len(self.doubled)}"
        )


def tally(traffic: SlackTraffic, rows: list[JobRow], messages: list[dict[str, Any]]) -> Tally:
    """Lost: an accepted event with no job, a job that never ended, or a successful job without a reply.
    Doubled: an event with two jobs, or a job with two replies (told apart by the job id in each reply's metadata)."""
    replies = Counter(
        ((message.get("metadata") or {}).get("event_payload") or {}).get("job_id") for message in messages
    )
    jobs_by_ts: dict[str, list[JobRow]] = {}
    for row in rows:
        jobs_by_ts.setdefault(row.message_ts, []).append(row)
    lost: list[str] = []
    doubled: list[str] = []
    accepted = [event for event in traffic.events if event.accepted]
    for event in accepted:
        jobs = jobs_by_ts.get(event.ts, [])
        if not jobs:
            lost.append(f"event {event.ts}: no job")
        if len(jobs) > 1:
            doubled.append(f"event {event.ts}: {len(jobs)} jobs")
        for job in jobs:
            if job.state != "done":
                lost.append(f"job {job.id}: never ended ({job.state})")
            if replies[job.id] > 1:
                doubled.append(f"job {job.id}: {replies[job.id]} replies")
            elif replies[job.id] == 0 and job.outcome == "success":
                lost.append(f"job {job.id}: success without a reply")
    strays = set(replies) - {row.id for row in rows}
    doubled += [f"reply to no job of this run: {job_id}" for job_id in strays]
    return Tally(
        events=len(traffic.events),
        accepted=len(accepted),
        jobs=len(rows),
        replies=sum(replies.values()),
        outcomes=dict(Counter(row.outcome or row.state for row in rows)),
        lost=lost,
        doubled=doubled,
    )


def reply_count(stack: Stack) -> int:
    """The replies in the fake Slack so far."""
    with stack.slack.lock:
        return len(stack.slack.messages)


def finish(stack: Stack, traffic: SlackTraffic, database_url: str) -> tuple[list[JobRow], Tally]:
    """Stop Slack's traffic and wait until its events are delivered and their jobs have ended (or time is up):
    the jobs, and the tally of what the events became."""
    traffic.stop()
    traffic.wait(timeout=120)
    rows = wait_all_done(database_url, traffic, timeout=150)
    with stack.slack.lock:
        messages = list(stack.slack.messages)
    return rows, tally(traffic, rows, messages)
