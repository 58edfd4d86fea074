"""Each job's MLflow run, written off the job's critical path through a disk spool.

The job only writes one JSON file (about a millisecond); a worker thread turns spooled jobs into
runs, nested runs and artifacts, and deletes each file once MLflow has all of it. When MLflow is
down or hangs the files wait, and are sent when it is back, also after a restart of composer.
"""

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prometheus_client import Counter, Gauge

from technoshare_common.schemas import ComposeResult, JobRunRequest
from technoshare_common.tracing import lean_mlflow_client

log = logging.getLogger(__name__)

EXPERIMENT = "technoshare_commentator"
STAGES = ("retrieval", "stage_a", "stage_b", "quality_gates", "slack_post")
LOGGED_TAG = "technoshare.logged"

RUNS_LOGGED = Counter("technoshare_mlflow_runs_logged_total", "Job runs sent to MLflow, by result.", ["result"])
SPOOL_BACKLOG = Gauge("technoshare_mlflow_spool_backlog", "Job runs waiting in the spool for MLflow.")


def job_tags(job: JobRunRequest | None, result: ComposeResult) -> dict[str, str]:
    evidence = result.evidence
    tags = {
        "job_id": result.job_id or "",
        "target_url": result.url,
        "domain": urlparse(result.url).hostname or "",
        "outcome": result.outcome.value,
        "adapter_name": evidence.adapter_name if evidence else "",
        "coverage": evidence.coverage.value if evidence else "",
        "stage_a_model": result.models.get("stage_a", ""),
        "stage_b_model": result.models.get("stage_b", ""),
        "repaired": str(result.repaired).lower(),
        "dry_run": str(job is None).lower(),
    }
    if job is not None:
        tags |= {"channel_id": job.channel_id, "message_ts": job.message_ts, "attempt": str(job.attempt)}
    if result.error:
        tags["error"] = result.error[:500]
    if result.trace_id:
        tags["trace_id"] = result.trace_id
    tags |= {f"prompt_version.{name}": version for name, version in result.prompt_versions.items()}
    return {key: value for key, value in tags.items() if value}


def job_metrics(result: ComposeResult) -> dict[str, float]:
    evidence = result.evidence
    metrics: dict[str, float] = {f"latency_seconds_{stage}": seconds for stage, seconds in result.timings.items()}
    usage = result.usage
    metrics |= {
        "tool_call_count": result.tool_calls,
        "source_count": len(evidence.sources) if evidence else 0,
        "snippet_count": len(evidence.snippets) if evidence else 0,
        "gate_failures": len(result.gate_failures),
        "gate_passed": sum(1 for gate in result.gates if gate.passed),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": usage.cached_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_usd": usage.cost_usd,
        "unpriced_llm_calls": usage.unpriced_calls,
    }
    return {key: float(value) for key, value in metrics.items()}


def job_artifacts(result: ComposeResult) -> dict[str, str]:
    evidence = result.evidence
    stage_b = {
        "reply": result.reply.model_dump(mode="json") if result.reply else None,
        "text": result.text,
        "repaired": result.repaired,
        "gates": [gate.model_dump(mode="json") for gate in result.gates],
    }
    payload = result.post.payload if result.post and result.post.payload else {"text": result.text}
    failures = "\n".join(f"{gate.name}: {gate.detail}" for gate in result.gate_failures)
    sources = (
        "\n".join(f"{source.title or source.url}\t{source.url}" for source in evidence.sources) if evidence else ""
    )
    return {
        "evidence.json": evidence.model_dump_json(indent=2) if evidence else "null",
        "stage_a_facts.json": result.facts.model_dump_json(indent=2) if result.facts else "null",
        "stage_b_result.json": json.dumps(stage_b, indent=2, ensure_ascii=False),
        "slack_payload.json": json.dumps(payload, indent=2, ensure_ascii=False),
        "gate_failures.txt": failures or "(none)",
        "sources.txt": sources or "(none)",
    }


class JobTracker:
    def __init__(
        self, tracking_uri: str | None, spool_dir: Path, enabled: bool = True, experiment: str = EXPERIMENT
    ) -> None:
        self.enabled = enabled and bool(tracking_uri)
        self.tracking_uri = tracking_uri
        self.spool_dir = spool_dir
        self.experiment = experiment
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._experiment_id: str | None = None
        self._available = True
        if self.enabled:
            lean_mlflow_client()
        if not enabled:
            log.info("MLflow tracking is disabled (MLFLOW_ENABLE_TRACKING=false)")
        elif not tracking_uri:
            log.info("MLflow tracking is off: MLFLOW_TRACKING_URI is not set")

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        SPOOL_BACKLOG.set_function(self.backlog)
        self._thread = threading.Thread(target=self._drain_forever, name="mlflow-job-runs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def backlog(self) -> int:
        return len(list(self.spool_dir.glob("*.json"))) if self.spool_dir.exists() else 0

    def submit(self, job: JobRunRequest | None, result: ComposeResult, params: dict[str, Any]) -> None:
        """Spool the finished job; never raises, so tracking cannot fail a job."""
        if not self.enabled:
            return
        record = {
            "job": job.model_dump(mode="json") if job else None,
            "result": result.model_dump(mode="json"),
            "params": params,
            "finished_at": time.time(),
        }
        name = f"{time.time_ns()}-{result.job_id or 'dry-run'}"
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.spool_dir, suffix=".tmp", delete=False) as handle:
                json.dump(record, handle, ensure_ascii=False)
            os.replace(handle.name, self.spool_dir / f"{name}.json")
        except OSError as exc:
            RUNS_LOGGED.labels("spool_failed").inc()
            log.error("could not spool the job's MLflow run", extra={"error": str(exc)})
            return
        self._wake.set()

    def _drain_forever(self) -> None:
        delay = 2.0
        while not self._stop.is_set():
            if self._drain_once():
                delay = 2.0
                self._wake.wait()
            else:
                self._wake.wait(delay)
                delay = min(delay * 2, 60.0)
            self._wake.clear()

    def _drain_once(self) -> bool:
        """Send every spooled job, oldest first; False as soon as MLflow fails (the rest wait)."""
        for path in sorted(self.spool_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.error("unreadable spooled MLflow run set aside", extra={"file": path.name, "error": str(exc)})
                path.rename(path.with_suffix(".bad"))
                continue
            try:
                self._log(record)
            except Exception as exc:
                RUNS_LOGGED.labels("deferred").inc()
                if self._available:
                    log.warning(
                        "MLflow is unavailable; job runs are kept in the spool until it is back",
                        extra={"error": str(exc)[:300], "backlog": self.backlog()},
                    )
                self._available = False
                return False
            path.unlink(missing_ok=True)
            RUNS_LOGGED.labels("logged").inc()
            if not self._available:
                log.info("MLflow is back; sending the spooled job runs", extra={"backlog": self.backlog()})
                self._available = True
        return True

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def _experiment(self, client: Any) -> str:
        if self._experiment_id is None:
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        return self._experiment_id

    def _log(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunStatus, RunTag

        client = self._client()
        experiment_id = self._experiment(client)
        job = JobRunRequest.model_validate(record["job"]) if record["job"] else None
        result = ComposeResult.model_validate(record["result"])
        tags = job_tags(job, result)
        if self._already_logged(client, experiment_id, tags):
            return
        end_ms = int(record["finished_at"] * 1000)
        start_ms = end_ms - int(result.timings.get("total", 0.0) * 1000)
        host = tags.get("domain", "dry run")
        run = client.create_run(experiment_id, start_time=start_ms, run_name=f"{host} {tags.get('job_id', '')[:8]}")
        run_id = run.info.run_id
        metrics = job_metrics(result)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, end_ms, 0) for key, value in metrics.items()],
            params=[Param(key, str(value)) for key, value in record["params"].items()],
            tags=[RunTag(key, value) for key, value in tags.items()],
        )
        with tempfile.TemporaryDirectory() as folder:
            for name, content in job_artifacts(result).items():
                Path(folder, name).write_text(content, encoding="utf-8")
            client.log_artifacts(run_id, folder)
        offset = start_ms
        for stage in STAGES:
            if stage not in result.timings:
                continue
            seconds = result.timings[stage]
            child = client.create_run(
                experiment_id,
                start_time=offset,
                run_name=stage,
                tags={"mlflow.parentRunId": run_id, "stage": stage}
                | {key: tags[key] for key in ("job_id", "attempt") if key in tags},
            )
            client.log_metric(child.info.run_id, "latency_seconds", seconds, timestamp=end_ms)
            offset += int(seconds * 1000)
            client.set_terminated(child.info.run_id, RunStatus.to_string(RunStatus.FINISHED), end_time=offset)
        if result.trace_id:
            self._link_trace(client, result.trace_id, run_id)
        client.set_tag(run_id, LOGGED_TAG, "true")
        status = RunStatus.FINISHED if result.outcome.value == "success" else RunStatus.FAILED
        client.set_terminated(run_id, RunStatus.to_string(status), end_time=end_ms)

    @staticmethod
    def _link_trace(client: Any, trace_id: str, run_id: str) -> None:
        """The trace may still be on its way (or lost with MLflow down): the run keeps its id either way."""
        try:
            client.set_trace_tag(trace_id, "run_id", run_id)
        except Exception as exc:
            log.info("could not tag the job's trace with its run", extra={"error": str(exc)[:200]})

    @staticmethod
    def _already_logged(client: Any, experiment_id: str, tags: dict[str, str]) -> bool:
        """A replay after a crash mid-log: keep a complete run, remove a partial one (and its stages)."""
        job_id, attempt = tags.get("job_id"), tags.get("attempt")
        if not job_id:
            return False
        query = f"tags.job_id = '{job_id}'" + (f" and tags.attempt = '{attempt}'" if attempt else "")
        runs = client.search_runs([experiment_id], filter_string=query)
        if any(run.data.tags.get(LOGGED_TAG) == "true" for run in runs):
            return True
        for run in runs:
            client.delete_run(run.info.run_id)
        return False
