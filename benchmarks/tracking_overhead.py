"""Time a job's MLflow tracking adds to its critical path: composer's spool versus synchronous logging.

The synchronous design logs, inside the job, a parent run and five nested runs, each with tags,
metrics and a JSON artifact. Ours writes the job to a spool file and returns; a worker thread sends
it. Both run against the same local MLflow server in the same run, then with the server stopped
and with a server that accepts connections but never answers (hung).

    make bench            # or: .venv/bin/python benchmarks/tracking_overhead.py [--jobs N]
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from composer.tracking import EXPERIMENT, STAGES, JobTracker
from technoshare_common.schemas import (
    ComposedReply,
    ComposeResult,
    Coverage,
    Evidence,
    GateResult,
    JobRunRequest,
    Outcome,
    ProjectLink,
    Source,
    StageAFacts,
    TokenUsage,
)
from technoshare_common.settings import REPO_DATA_DIR
from technoshare_common.tracing import lean_mlflow_client

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sample_job(index: int) -> tuple[JobRunRequest, ComposeResult]:
    paper = json.loads((REPO_DATA_DIR / "samples" / "arxiv" / "2106.09685.json").read_text())
    url = "https://arxiv.org/abs/2106.09685"
    job_id = f"bench-{index}-{time.time_ns()}"
    timings = {"retrieval": 0.4, "stage_a": 1.2, "stage_b": 2.1, "quality_gates": 0.01, "slack_post": 0.2}
    return (
        JobRunRequest(job_id=job_id, channel_id="C1", message_ts="1.2", thread_ts="1.2", url=url),
        ComposeResult(
            job_id=job_id,
            url=url,
            outcome=Outcome.success,
            reply=ComposedReply(
                tldr=["LoRA trains small adapters."] * 3,
                summary=["It freezes the base weights."] * 12,
                projects=[ProjectLink(theme="Model training and fine-tuning", relevance="Cheaper runs.")],
            ),
            text="*TL;DR*\n…",
            gates=[GateResult(name="schema_validity", passed=True)],
            evidence=Evidence(
                url=url,
                final_url=url,
                adapter_name="ArxivAdapter",
                coverage=Coverage.metadata_only,
                title=paper["title"],
                text=paper["abstract"],
                sources=[Source(url=url, title=paper["title"])],
            ),
            facts=StageAFacts(what_it_is="A fine-tuning method.", key_facts=["It uses low-rank matrices."] * 6),
            timings=timings | {"total": sum(timings.values())},
            usage=TokenUsage(prompt_tokens=1270, completion_tokens=1050, total_tokens=2320, cost_usd=0.00082),
            models={"stage_a": "gpt-4o-mini", "stage_b": "gpt-4o-mini"},
            prompt_versions={"stage_a_extract_facts": "1", "stage_b_compose_reply": "1"},
        ),
    )


def log_synchronously(tracking_uri: str, job: JobRunRequest, result: ComposeResult) -> None:
    """The design this replaces: everything logged inside the job before it returns."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"sync {job.job_id}"):
        mlflow.set_tags({"job_id": job.job_id, "outcome": result.outcome.value, "domain": "arxiv.org"})
        mlflow.log_metrics({"cost_usd": result.usage.cost_usd, "total_tokens": result.usage.total_tokens})
        mlflow.log_dict(result.model_dump(mode="json"), "result.json")
        for stage in STAGES:
            with mlflow.start_run(run_name=stage, nested=True):
                mlflow.set_tags({"job_id": job.job_id, "stage": stage})
                mlflow.log_metric("latency_seconds", result.timings[stage])
                mlflow.log_dict({"stage": stage, "latency_seconds": result.timings[stage]}, f"{stage}.json")


def start_mlflow(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MLFLOW_PORT": str(port),
        "MLFLOW_BACKEND_STORE": f"sqlite:///{workdir / 'mlflow.db'}",
        "MLFLOW_ARTIFACT_ROOT": str(workdir / "mlartifacts"),
    }
    log = (workdir / "mlflow.log").open("ab")
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "start_mlflow.sh")],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"MLflow did not start: {(workdir / 'mlflow.log').read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def hung_server() -> tuple[int, socket.socket]:
    """Accepts connections and never answers, like a wedged MLflow."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], server


def time_ours(tracking_uri: str, spool: Path, jobs: int) -> tuple[list[float], JobTracker]:
    tracker = JobTracker(tracking_uri, spool)
    tracker.start()
    samples = []
    for index in range(jobs):
        job, result = sample_job(index)
        start = time.perf_counter()
        tracker.submit(job, result, {"stage_b.temperature": 0.3})
        samples.append(time.perf_counter() - start)
    return samples, tracker


def time_sync(tracking_uri: str, jobs: int) -> list[float]:
    samples = []
    for index in range(jobs):
        job, result = sample_job(index)
        start = time.perf_counter()
        try:
            log_synchronously(tracking_uri, job, result)
        except Exception as exc:
            print(f"  synchronous logging failed after {time.perf_counter() - start:.1f}s: {type(exc).__name__}")
        samples.append(time.perf_counter() - start)
    return samples


def row(label: str, samples: list[float]) -> str:
    ms = sorted(sample * 1000 for sample in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"| {label} | {len(ms)} | {statistics.median(ms):.2f} | {p95:.2f} | {ms[-1]:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30, help="jobs per case with the server up")
    parser.add_argument("--failing-sync-jobs", type=int, default=1, help="synchronous jobs with MLflow down/hung")
    args = parser.parse_args()
    lean_mlflow_client()
    workdir = Path(tempfile.mkdtemp(prefix="tracking-bench-"))
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    rows = []

    server = start_mlflow(workdir, port)
    try:
        log_synchronously(uri, *sample_job(-1))  # warm the client and the experiment
        rows.append(row("synchronous, MLflow up", time_sync(uri, args.jobs)))
        ours, tracker = time_ours(uri, workdir / "spool-up", args.jobs)
        rows.append(row("spool (ours), MLflow up", ours))
        drain_start = time.perf_counter()
        while tracker.backlog() and time.perf_counter() - drain_start < 300:
            time.sleep(0.05)
        drained = time.perf_counter() - drain_start
        tracker.stop()
    finally:
        stop(server)

    ours_down, down_tracker = time_ours(uri, workdir / "spool-down", args.jobs)
    rows.append(row("spool (ours), MLflow down", ours_down))
    rows.append(row("synchronous, MLflow down", time_sync(uri, args.failing_sync_jobs)))
    backlog_down = down_tracker.backlog()
    down_tracker.stop()

    hung_port, hung = hung_server()
    hung_uri = f"http://127.0.0.1:{hung_port}"
    ours_hung, hung_tracker = time_ours(hung_uri, workdir / "spool-hung", args.jobs)
    rows.append(row("spool (ours), MLflow hung", ours_hung))
    rows.append(row("synchronous, MLflow hung", time_sync(hung_uri, args.failing_sync_jobs)))
    hung_tracker.stop(timeout=0.1)
    hung.close()

    print("\ntime added to a job's critical path (ms)\n")
    print("| case | jobs | p50 | p95 | max |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(
        f"\nspool drained {args.jobs} job runs into MLflow in {drained:.1f}s ({drained / args.jobs * 1000:.0f} ms each)"
    )
    print(f"with MLflow down, {backlog_down} job runs waited in the spool (nothing lost)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
