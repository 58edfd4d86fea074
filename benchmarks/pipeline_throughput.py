"""Jobs per second end to end: signed Slack events -> ingest -> composer -> llm-gateway -> a scripted upstream
that answers each call after 0.5 s -> poster -> a fake Slack, with the job store (and poster's) on PostgreSQL.

The five services run as processes (tests/support/stack.py) with composer pinned to COMPOSE_MODE=abstractive,
so every job makes its two LLM calls (Stage A, Stage B) and the scripted replies pass composer's gates. Each run
sends `jobs` events (one link each) at a rate above what the stack can take, so the queue never runs dry, and
measures, per DISPATCH_CONCURRENCY and composer process count (uvicorn workers, as replicas behind a Service):

- jobs/s: finished jobs / (last finish - first acceptance), on the database's clock;
- latency p50/p95: acceptance -> finish (queueing included, so it grows with the backlog) and claim -> finish
  (one job's own time through composer, the gateway and poster);
- lost (an event without a reply in its thread) and doubled (more than one): both must be 0;
- CPU ms per job of each service and of this process (the fake Slack, scripted LLM and sample site run here).

`default` in --concurrency leaves DISPATCH_CONCURRENCY unset: what a deployment gets.

    make bench   # or: .venv/bin/python benchmarks/pipeline_throughput.py [--concurrency 1,4,8,16,32,default]
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import create_engine, text
from starlette.types import ASGIApp, Receive, Scope, Send

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ingest_load import event, percentile, postgres_database  # noqa: E402  (beside this file)

from tests.support.servers import wait_until  # noqa: E402
from tests.support.stack import CHANNEL, Stack  # noqa: E402

LLM_SECONDS = 0.5


class SlowUpstream:
    """Holds every chat completion for a fixed time before the scripted answer, as a hosted model would."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            await asyncio.sleep(self.seconds)
        await self.app(scope, receive, send)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its children (uvicorn's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def send(url: str, secret: str, stamps: list[str], rate: float) -> int:
    """Each event at its scheduled time (open loop); returns the answers other than 200."""
    verifier = SignatureVerifier(secret)
    loop = asyncio.get_running_loop()
    bodies = [json.dumps(event(ts)).encode() for ts in stamps]
    failures = 0

    async def one(session: aiohttp.ClientSession, index: int, start: float) -> None:
        nonlocal failures
        await asyncio.sleep(max(0.0, start + index / rate - loop.time()))  # the schedule, not a pause
        ts = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-slack-request-timestamp": ts,
            "x-slack-signature": verifier.generate_signature(timestamp=ts, body=bodies[index]),
        }
        try:
            async with session.post(f"{url}/slack/events", data=bodies[index], headers=headers) as response:
                await response.read()
                failures += response.status != 200
        except aiohttp.ClientError:
            failures += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = loop.time()
        await asyncio.gather(*(one(session, index, start) for index in range(len(bodies))))
    return failures


def run(
    database_url: str, concurrency: str, composers: int, jobs: int, rate: float, workdir: Path, extra: dict[str, str]
) -> dict[str, Any]:
    env = {
        "JOB_STORE_DATABASE_URL": database_url,
        "POSTER_DATABASE_URL": database_url,  # one database for both, as the chart has it
        "MLFLOW_TRACKING_URI": "",
        "LOG_LEVEL": "WARNING",
        "COMPOSE_MODE": "abstractive",
    } | extra
    if concurrency != "default":
        env["DISPATCH_CONCURRENCY"] = concurrency
    workers = {"composer": {"WEB_CONCURRENCY": str(composers)}}
    stack = Stack(workdir, env=env, service_env=workers, start_timeout=300)
    stack.llm.app.add_middleware(SlowUpstream, seconds=LLM_SECONDS)
    base = int(time.time())
    stamps = [f"{base}.{i:06d}" for i in range(jobs)]
    with stack:
        pids = {name: service.process.pid for name, service in stack.services.items() if service.process}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"bench": time.process_time()}
        non_200 = asyncio.run(send(stack.ingest_url, stack.signing_secret, stamps, rate))
        try:
            wait_until(
                lambda: all(stack.slack.replies_in(CHANNEL, ts) for ts in stamps),
                timeout=60 + jobs * 3,
                interval=0.5,
                what="a reply to every event",
            )
        except AssertionError as exc:
            print(f"  ! {exc}", flush=True)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"bench": time.process_time()}
        replies = [len(stack.slack.replies_in(CHANNEL, ts)) for ts in stamps]
    engine = create_engine(database_url)
    try:
        columns = "created_at, started_at, finished_at, outcome, error, gate_failures_json"
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT {columns} FROM jobs")).all()
    finally:
        engine.dispose()
    done = [row for row in rows if row.finished_at is not None]
    span = max(row.finished_at for row in done) - min(row.created_at for row in rows) if done else float("inf")
    waited = [row.finished_at - row.created_at for row in done]
    own = [row.finished_at - row.started_at for row in done]
    outcomes = Counter(row.outcome or "unfinished" for row in rows)
    cpu = {name: round((after[name] - before[name]) * 1000 / jobs, 1) for name in before}
    return {
        "jobs": jobs,
        "jobs_per_s": round(len(done) / span, 2),
        "p50_s": round(percentile(waited, 50), 2) if waited else None,
        "p95_s": round(percentile(waited, 95), 2) if waited else None,
        "own_p50_s": round(percentile(own, 50), 2) if own else None,
        "own_p95_s": round(percentile(own, 95), 2) if own else None,
        "non_200": non_200,
        "lost": sum(1 for n in replies if n == 0),
        "doubled": sum(1 for n in replies if n > 1),
        "outcomes": dict(outcomes),
        "errors": sorted({(row.error or row.gate_failures_json)[:300] for row in rows if row.outcome != "success"})[:3],
        "cpu_ms_per_job": cpu,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,4,8,16,32,default", help="DISPATCH_CONCURRENCY values")
    parser.add_argument("--composers", default="1,2", help="composer processes, comma-separated")
    parser.add_argument("--jobs-per-slot", type=int, default=8, help="events per run = this x the concurrency")
    parser.add_argument("--min-jobs", type=int, default=30)
    parser.add_argument("--max-jobs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=40.0, help="events per second sent")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for every service (repeatable)")
    args = parser.parse_args()
    extra = dict(pair.split("=", 1) for pair in args.env)
    from ingest.settings import IngestSettings

    default = IngestSettings.model_fields["dispatch_concurrency"].default
    rows = []
    for composers in (int(c) for c in args.composers.split(",")):
        for concurrency in args.concurrency.split(","):
            slots = default if concurrency == "default" else int(concurrency)
            jobs = max(args.min_jobs, min(args.max_jobs, slots * args.jobs_per_slot))
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp, postgres_database() as database_url:
                    result = run(database_url, concurrency, composers, jobs, args.rate, Path(tmp), extra)
                label = f"default ({default})" if concurrency == "default" else concurrency
                row = {"concurrency": label, "composers": composers} | result
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| DISPATCH_CONCURRENCY | composers | jobs | jobs/s | p50 s | p95 s | own p50 s | own p95 s |", end="")
    print(" lost | doubled | not success | CPU ms/job (ingest, composer, gateway, retrieval, poster, bench) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = r["cpu_ms_per_job"]
        shown = ", ".join(str(cpu[k]) for k in ("ingest", "composer", "llm_gateway", "retrieval", "poster", "bench"))
        failed = sum(n for outcome, n in r["outcomes"].items() if outcome != "success")
        print(
            f"| {r['concurrency']} | {r['composers']} | {r['jobs']} | {r['jobs_per_s']} | {r['p50_s']} | "
            f"{r['p95_s']} | {r['own_p50_s']} | {r['own_p95_s']} | {r['lost']} | {r['doubled']} | {failed} | "
            f"{shown} | {r['load']:.1f} |"
        )


if __name__ == "__main__":
    main()
