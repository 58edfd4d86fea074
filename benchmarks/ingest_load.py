"""Slack's view of ingest under load: how fast `POST /slack/events` is acknowledged, and whether every
event still ends as exactly one job (ingest alone) or one reply (the whole stack).

Signed events are sent on loopback at a fixed rate (open loop: each at its scheduled time, whatever the
earlier ones are doing), each followed half a second later by Slack's retry of it (`X-Slack-Retry-Num`).
Every request's ack time counts. Modes:

- `ingest`: ingest alone, as a process, with a composer stub (a process of its own) that answers at once;
- `stack`: the five services as processes (tests/support/stack.py: scripted LLM, fake Slack).

Layouts: `together` (INGEST_ROLE=all: one process acks and dispatches, as `make run`) and `split` (the chart's:
INGEST_ROLE=acks in `--ack-processes` uvicorn workers, 2 as the chart's two `ingest` replicas, and one dispatcher
process, INGEST_ROLE=dispatch, on one store).

Lost = events with no job (ingest) or no reply in their thread (stack); doubled = more than one.

    make bench   # or: .venv/bin/python benchmarks/ingest_load.py [--rates 100,250] [--seconds 4] [--layouts split]
"""

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvicorn
from fastapi import FastAPI
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import LOCAL_POSTGRES_URL  # noqa: E402  (the PostgreSQL the job store tests use)
from tests.support.servers import ServiceProcess, free_port, wait_until  # noqa: E402
from tests.support.stack import CHANNEL, Stack  # noqa: E402

ARXIV = "https://arxiv.org/abs/2106.09685"


def composer_stub() -> FastAPI:
    """Answers every hand-off with success at once, counting hand-offs per job (GET /calls)."""
    app, calls = FastAPI(), Counter[str]()

    @app.post("/v1/jobs")
    async def run_job(job: dict[str, Any]) -> dict[str, Any]:
        calls[job["job_id"]] += 1
        return {"job_id": job["job_id"], "url": job["url"], "outcome": "success", "text": "ok"}

    @app.get("/calls")
    async def hand_offs() -> dict[str, int]:
        return dict(calls)

    return app


@contextmanager
def composer_stub_process(workdir: Path) -> Iterator[tuple[str, Callable[[], Counter[str]]]]:
    """(URL, hand-offs per job so far) of the stub in a process of its own, as composer is: served from a thread
    of this process, it took the GIL from the sender at 100 hand-offs/s, and the sender's delays counted as
    ingest's ack time."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (workdir / "composer_stub.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, __file__, "--composer-stub", str(port)], stdout=log, stderr=log)
    try:

        def serving() -> bool:
            try:
                return httpx.get(f"{url}/calls", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(serving, timeout=60, what="the composer stub")
        yield url, lambda: Counter[str](httpx.get(f"{url}/calls", timeout=30).json())
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    name = f"technoshare_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(LOCAL_POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{LOCAL_POSTGRES_URL.rpartition('/')[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def job_store(database: str, workdir: Path) -> Iterator[str]:
    if database == "sqlite":
        yield f"sqlite:///{workdir / 'jobs.db'}"
    else:
        with postgres_database() as url:
            yield url


def event(ts: str) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "T0TEST",
        "event_id": f"Ev{uuid.uuid4().hex[:12]}",
        "event_time": int(time.time()),
        "event": {"type": "message", "channel": CHANNEL, "user": "U0HUMAN", "text": f"<{ARXIV}>", "ts": ts},
    }


async def send(url: str, secret: str, rate: int, seconds: float) -> tuple[list[str], list[float], int]:
    """(message ts of each event, ack latencies in seconds, non-200 answers).

    aiohttp, and bodies signed before the clock starts: with httpx the sender itself used most of a core
    at 200 requests/s and its own delays showed up as ingest's latency.
    """
    count = int(rate * seconds)
    base = int(time.time())
    stamps = [f"{base}.{i:06d}" for i in range(count)]
    bodies = [json.dumps(event(ts)).encode() for ts in stamps]
    latencies: list[float] = []
    failures = 0
    verifier = SignatureVerifier(secret)
    loop = asyncio.get_running_loop()

    def signed(body: bytes, retry: bool) -> dict[str, str]:
        ts = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": verifier.generate_signature(timestamp=ts, body=body),
        }
        if retry:
            headers |= {"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}
        return headers

    requests = [(body, signed(body, False), signed(body, True)) for body in bodies]

    async def post(session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> None:
        nonlocal failures
        start = time.perf_counter()
        try:
            async with session.post(f"{url}/slack/events", data=body, headers=headers) as response:
                await response.read()
                failures += response.status != 200
        except aiohttp.ClientError:
            failures += 1
        latencies.append(time.perf_counter() - start)

    async def one(session: aiohttp.ClientSession, index: int, start: float) -> None:
        body, first, retry = requests[index]
        await asyncio.sleep(max(0.0, start + index / rate - loop.time()))  # the schedule, not a pause
        await post(session, body, first)
        await asyncio.sleep(max(0.0, start + index / rate + 0.5 - loop.time()))
        await post(session, body, retry)

    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = loop.time()
        await asyncio.gather(*(one(session, index, start) for index in range(count)))
    return stamps, latencies, failures


def send_from_own_process(url: str, secret: str, rate: int, seconds: float) -> tuple[list[str], list[float], int]:
    """`send` in a process of its own: in this one the fakes (Slack, the LLM, the sample site) serve the stack from
    threads, and at 250 events/s their GIL time delayed the sender, which counted as ingest's ack time."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as sender:
        return sender.submit(_send_blocking, url, secret, rate, seconds).result()


def _send_blocking(url: str, secret: str, rate: int, seconds: float) -> tuple[list[str], list[float], int]:
    return asyncio.run(send(url, secret, rate, seconds))


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run_ingest_alone(
    database_url: str, rate: int, seconds: float, workdir: Path, split: bool, ack_processes: int
) -> dict[str, Any]:
    secret = secrets.token_hex(16)
    with composer_stub_process(workdir) as (composer_url, calls):
        env = {
            "SLACK_SIGNING_SECRET": secret,
            "JOB_STORE_DATABASE_URL": database_url,
            "COMPOSER_URL": composer_url,
            "MLFLOW_TRACKING_URI": "",
            "LOG_LEVEL": "WARNING",
        }
        acks = {"INGEST_ROLE": "acks", "WEB_CONCURRENCY": str(ack_processes)}
        roles = {"ingest": acks, "dispatcher": {"INGEST_ROLE": "dispatch"}} if split else {"ingest": {}}
        processes = [
            ServiceProcess("ingest", free_port(), env | role, workdir, name=name) for name, role in roles.items()
        ]
        for process in processes:
            process.start()
        try:
            stamps, latencies, failures = send_from_own_process(processes[0].url, secret, rate, seconds)
            jobs_per_event = wait_for_jobs(database_url, stamps, calls)
        finally:
            for process in processes:
                process.stop()
    return summary(latencies, failures, [jobs_per_event.get(ts, 0) for ts in stamps])


def wait_for_jobs(database_url: str, stamps: list[str], calls: Callable[[], Counter[str]]) -> dict[str, int]:
    """Hand-offs per event once every job is done (or after a minute)."""
    engine = create_engine(database_url)
    try:

        def all_done() -> bool:
            with engine.connect() as conn:
                return conn.execute(text("SELECT COUNT(*) FROM jobs WHERE state != 'done'")).scalar_one() == 0

        try:
            wait_until(all_done, timeout=60, interval=0.2, what="every job done")
        except AssertionError as exc:
            print(f"  ! {exc}")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, message_ts FROM jobs")).all()
    finally:
        engine.dispose()
    per_job = calls()
    per_event: Counter[str] = Counter()
    for job_id, message_ts in rows:
        per_event[message_ts] += per_job[job_id]
    return per_event


WORK = ("dispatcher", "composer", "llm_gateway", "retrieval", "poster")


def lower_priority(pid: int, nice: int) -> None:
    """The process and its children (uvicorn's workers) at `nice`: on one machine, the stand-in for the CPU a
    cluster reserves for each Deployment's pods (their requests become the kernel's CPU weights for their cgroups)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for each in [pid, *map(int, children)]:
        os.setpriority(os.PRIO_PROCESS, each, nice)


def run_stack(
    database_url: str, rate: int, seconds: float, workdir: Path, split: bool, ack_processes: int, work_nice: int = 0
) -> dict[str, Any]:
    env = {"JOB_STORE_DATABASE_URL": database_url, "MLFLOW_TRACKING_URI": "", "LOG_LEVEL": "WARNING"}
    acks = {"ingest": {"WEB_CONCURRENCY": str(ack_processes)}} if split else {}
    with Stack(workdir, env=env, split_ingest=split, service_env=acks) as stack:
        if split and work_nice:
            for name in WORK:
                process = stack.services[name].process
                assert process is not None
                lower_priority(process.pid, work_nice)
        stamps, latencies, failures = send_from_own_process(stack.ingest_url, stack.signing_secret, rate, seconds)

        def replied() -> bool:
            return all(stack.slack.replies_in(CHANNEL, ts) for ts in stamps)

        try:
            wait_until(replied, timeout=180, interval=0.5, what="a reply to every event")
        except AssertionError as exc:
            print(f"  ! {exc}")
        replies = [len(stack.slack.replies_in(CHANNEL, ts)) for ts in stamps]
    return summary(latencies, failures, replies)


def summary(latencies: list[float], failures: int, outcomes: list[int]) -> dict[str, Any]:
    return {
        "events": len(outcomes),
        "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "non_200": failures,
        "lost": sum(1 for n in outcomes if n == 0),
        "doubled": sum(1 for n in outcomes if n > 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,250", help="events per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long each rate is sent")
    parser.add_argument("--modes", default="ingest,stack")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--layouts", default="together,split", help="together (INGEST_ROLE=all) and/or split")
    parser.add_argument("--ack-processes", type=int, default=2, help="uvicorn workers of the acks (split layout)")
    parser.add_argument(
        "--work-nice", type=int, default=0, help="stack, split: the work's processes at this nice (acks at 0)"
    )
    parser.add_argument("--composer-stub", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the stub's process
    args = parser.parse_args()
    if args.composer_stub:
        uvicorn.run(composer_stub(), host="127.0.0.1", port=args.composer_stub, log_level="warning")
        return
    rows = []
    runs = [
        (mode, layout, database, int(rate))
        for mode in args.modes.split(",")
        for layout in args.layouts.split(",")
        for database in args.databases.split(",")
        for rate in args.rates.split(",")
    ]
    for mode, layout, database, rate in runs:
        with tempfile.TemporaryDirectory() as tmp, job_store(database, Path(tmp)) as database_url:
            split = layout == "split"
            if mode == "ingest":
                result = run_ingest_alone(database_url, rate, args.seconds, Path(tmp), split, args.ack_processes)
            else:
                result = run_stack(
                    database_url, rate, args.seconds, Path(tmp), split, args.ack_processes, args.work_nice
                )
        load = os.getloadavg()[0]  # other work on the machine shows in the tail: say how busy it was
        nice = args.work_nice if mode == "stack" and layout == "split" else 0
        row = {"mode": mode, "layout": layout, "database": database, "rate": rate, "work_nice": nice} | result
        row["load"] = round(load, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(
        "\n| mode | layout | work nice | database | events/s | events (+ retries) | ack p50 ms | ack p99 ms |", end=""
    )
    print(" max ms | non-200 | lost | doubled | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['layout']} | {r['work_nice']} | {r['database']} | {r['rate']} | "
            f"{r['events']} (+{r['requests'] - r['events']}) | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['non_200']} | {r['lost']} | {r['doubled']} | "
            f"{r['load']} |"
        )


if __name__ == "__main__":
    main()
