"""Time a job's MLflow tracking adds to its critical path: composer's spool versus synchronous logging.

The synchronous design logs, inside the job, a parent run and five nested runs, each with tags,
metrics and a JSON artifact. Ours writes the job to a spool file and returns; a worker thread sends
it. Both run against the same local MLflow server in the same run, then with the server stopped
and with a server that accepts connections but never answers (hung).

    make bench            # or: .venv/bin/python benchmarks/tracking_overhead.py [--jobs N]
"""

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from composer.tracking import EXPERIMENT, STAGES, JobTracker
from technoshare_common.schemas import ComposeResult, JobRunRequest
from technoshare_common.tracing import lean_mlflow_client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.jobs import arxiv_job  # noqa: E402  (the sample job the tracking tests use)
from tests.support.mlflow_server import MlflowServer  # noqa: E402


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
        job, result = arxiv_job(f"bench-{index}-{time.time_ns()}")
        start = time.perf_counter()
        tracker.submit(job, result, {"stage_b.temperature": 0.3})
        samples.append(time.perf_counter() - start)
    return samples, tracker


def time_sync(tracking_uri: str, jobs: int) -> list[float]:
    samples = []
    for index in range(jobs):
        job, result = arxiv_job(f"bench-{index}-{time.time_ns()}")
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
    server = MlflowServer(workdir / "mlflow")
    server.start()
    uri = server.url
    rows = []
    try:
        log_synchronously(uri, *arxiv_job("bench-warm-up"))  # warm the client and the experiment
        rows.append(row("synchronous, MLflow up", time_sync(uri, args.jobs)))
        ours, tracker = time_ours(uri, workdir / "spool-up", args.jobs)
        rows.append(row("spool (ours), MLflow up", ours))
        drain_start = time.perf_counter()
        while tracker.backlog() and time.perf_counter() - drain_start < 300:
            time.sleep(0.05)
        drained = time.perf_counter() - drain_start
        tracker.stop()
    finally:
        server.stop()

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
