"""Latency llm-gateway adds over calling the upstream directly, next to LiteLLM's proxy, in one run.

A mock OpenAI upstream with a fixed latency runs in its own process. For each concurrency level the
load generator sends the same chat completion (1) straight to the mock, (2) through llm-gateway with
accounting, budgets and metrics on, (3) through LiteLLM's proxy. Overhead is the difference of the
latency percentiles against (1). RSS is read from /proc, at idle and at the peak under load.

    make bench            # or: .venv/bin/python benchmarks/gateway_overhead.py [--requests N]
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
LITELLM = ROOT / ".cache" / "litellm" / "bin" / "litellm"
MODEL = "gpt-4o-mini"
BODY = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You summarise links for an engineering team in three sentences."},
        {"role": "user", "content": "Summarise: LoRA freezes the weights and trains low-rank adapters. " * 8},
    ],
    "max_tokens": 200,
    "temperature": 0.2,
}
TOKEN = "bench-token"
ROUNDS = 4
LITELLM_KEY = "sk-bench-master-key-0123456789abcdef"

MOCK_UPSTREAM = r"""
import asyncio, json, sys, time
LATENCY = float(sys.argv[2])
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A short answer."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 180, "completion_tokens": 60, "total_tokens": 240,
              "prompt_tokens_details": {"cached_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0}},
}).encode()
MODELS = json.dumps(
    {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "bench"}]}
).encode()

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"}); return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    body = MODELS
    if scope["method"] == "POST":
        await asyncio.sleep(LATENCY)
        body = ANSWER
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    pid: int | None = None
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    latencies: dict[int, list[float]] = field(default_factory=dict)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (LiteLLM and uvicorn may fork workers)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(command, env=os.environ | env, stdout=handle, stderr=handle, start_new_session=True)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2, headers={"authorization": f"Bearer {TOKEN}"}).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not become ready:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


async def load(target: Target, concurrency: int, requests: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=target.url, headers=target.headers, limits=limits, timeout=60) as client:
        for _ in range(min(concurrency * 2, 50)):  # warm connections and caches
            (await client.post("/chat/completions", json=BODY)).raise_for_status()
        queue: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(requests):
            queue.put_nowait(None)

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                start = time.perf_counter()
                response = await client.post("/chat/completions", json=BODY)
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def run_level(target: Target, concurrency: int, requests: int) -> None:
    """One block of load on one target, sampling its RSS meanwhile."""
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set() and target.pid:
            peak[0] = max(peak[0], rss_mb(target.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    target.latencies.setdefault(concurrency, []).extend(asyncio.run(load(target, concurrency, requests)))
    done.set()
    sampler.join()
    target.rss_peak_mb = max(target.rss_peak_mb, peak[0])


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the mock upstream's fixed latency")
    parser.add_argument("--requests", type=int, default=400, help="requests per target and concurrency level")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        mock_port, gateway_port, litellm_port = free_port(), free_port(), free_port()
        (workdir / "mock.py").write_text(MOCK_UPSTREAM)
        mock = start(
            [str(VENV_BIN / "python"), str(workdir / "mock.py"), str(mock_port), str(args.latency_ms / 1000)],
            {},
            workdir / "mock.log",
        )
        processes.append(mock)
        wait_ready(f"http://127.0.0.1:{mock_port}/v1/models", mock, workdir / "mock.log")

        gateway = start(
            [
                str(VENV_BIN / "uvicorn"),
                "--factory",
                "llm_gateway.main:build_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(gateway_port),
                "--no-access-log",
            ],
            {
                "LLM_UPSTREAM_BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
                "OPENAI_API_KEY": "sk-bench",
                "TECHNOSHARE_INTERNAL_TOKEN": TOKEN,
                # Accounting as in production: budgets (with the prompt estimate), spend kept in a database.
                "LLM_BUDGET_USD_PER_DAY": "1000000",
                "LLM_SPEND_DATABASE_URL": f"sqlite:///{workdir / 'spend.db'}",
                "LOG_LEVEL": "WARNING",
            },
            workdir / "gateway.log",
        )
        processes.append(gateway)
        wait_ready(f"http://127.0.0.1:{gateway_port}/readyz", gateway, workdir / "gateway.log")

        targets = [
            Target("direct (mock)", f"http://127.0.0.1:{mock_port}/v1", {}, mock.pid),
            Target(
                "llm-gateway", f"http://127.0.0.1:{gateway_port}/v1", {"authorization": f"Bearer {TOKEN}"}, gateway.pid
            ),
        ]
        if LITELLM.exists():
            config = workdir / "litellm.yaml"
            config.write_text(
                json.dumps(
                    {
                        "model_list": [
                            {
                                "model_name": MODEL,
                                "litellm_params": {
                                    "model": f"openai/{MODEL}",
                                    "api_base": f"http://127.0.0.1:{mock_port}/v1",
                                    "api_key": "sk-bench",
                                },
                            }
                        ],
                        "litellm_settings": {"telemetry": False, "set_verbose": False},
                    }
                )
            )
            litellm = start(
                [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(litellm_port)],
                {
                    "LITELLM_LOG": "ERROR",
                    "LITELLM_MODE": "PRODUCTION",
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "LITELLM_MASTER_KEY": LITELLM_KEY,
                },
                workdir / "litellm.log",
            )
            processes.append(litellm)
            wait_ready(f"http://127.0.0.1:{litellm_port}/health/liveliness", litellm, workdir / "litellm.log")
            targets.append(
                Target(
                    "LiteLLM proxy",
                    f"http://127.0.0.1:{litellm_port}/v1",
                    {"authorization": f"Bearer {LITELLM_KEY}"},
                    litellm.pid,
                )
            )
        else:
            print(f"LiteLLM is not installed at {LITELLM}: run `make bench` to install it", file=sys.stderr)

        time.sleep(1)
        for target in targets:
            target.rss_idle_mb = rss_mb(target.pid) if target.pid else 0.0
        for concurrency in levels:
            # Rounds that alternate the targets, so slow drifts of this shared machine hit all of them alike.
            per_round = max(args.requests, concurrency * 10) // ROUNDS
            for _ in range(ROUNDS):
                for target in targets:
                    run_level(target, concurrency, per_round)
    finally:
        for process in reversed(processes):
            stop(process)

    direct = targets[0]
    results = []
    print(f"\nmock upstream latency {args.latency_ms:.0f} ms; overhead = percentile via proxy - percentile direct\n")
    print("| concurrency | target | p50 ms | p99 ms | p50 overhead ms | p99 overhead ms | req/s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for concurrency in levels:
        base50 = percentile(direct.latencies[concurrency], 0.50) * 1000
        base99 = percentile(direct.latencies[concurrency], 0.99) * 1000
        for target in targets:
            values = target.latencies[concurrency]
            p50, p99 = percentile(values, 0.50) * 1000, percentile(values, 0.99) * 1000
            throughput = concurrency / statistics.mean(values)
            overhead50 = p50 - base50 if target is not direct else 0.0
            overhead99 = p99 - base99 if target is not direct else 0.0
            results.append(
                {
                    "concurrency": concurrency,
                    "target": target.name,
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "p50_overhead_ms": overhead50,
                    "p99_overhead_ms": overhead99,
                    "requests_per_second": throughput,
                }
            )
            print(
                f"| {concurrency} | {target.name} | {p50:.2f} | {p99:.2f} | "
                f"{overhead50:.2f} | {overhead99:.2f} | {throughput:.0f} |"
            )
    print("\n| target | RSS idle MB | RSS peak under load MB |")
    print("|---|---:|---:|")
    for target in targets:
        print(f"| {target.name} | {target.rss_idle_mb:.0f} | {target.rss_peak_mb:.0f} |")
    if args.json:
        memory = {t.name: {"rss_idle_mb": t.rss_idle_mb, "rss_peak_mb": t.rss_peak_mb} for t in targets}
        args.json.write_text(json.dumps({"latency": results, "memory": memory}, indent=2))


if __name__ == "__main__":
    main()
