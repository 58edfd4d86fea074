"""Each job's MLflow run, written off the job's critical path through a disk spool.

The job only writes one JSON file (about a millisecond); the spool's thread turns it into a run,
nested runs and artifacts, then tags the job's trace with the run. When MLflow is down or hangs the
files wait, and are sent when it is back, also after a restart of composer.
"""

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from composer.app_version import AppVersions
from technoshare_common.redaction import redact
from technoshare_common.schemas import ComposeResult, JobRunRequest, PostStatus, ReplyQuality
from technoshare_common.spool import Deferred, DiskSpool, Record
from technoshare_common.tracing import lean_mlflow_client

log = logging.getLogger(__name__)

EXPERIMENT = "technoshare_commentator"
STAGES = ("retrieval", "stage_a", "stage_b", "quality_gates", "slack_post")
LOGGED_TAG = "technoshare.logged"

TRACE_LINK_PATIENCE_SECONDS = 24 * 3600
POSTED = (PostStatus.posted, PostStatus.dry_run)  # posted by this attempt: its trace is scored (a repost's is not)
SCORER_ID = "technoshare-gates"  # the source of the live assessments (composer.quality.live)


def job_tags(job: JobRunRequest | None, result: ComposeResult) -> dict[str, str]:
    evidence = result.evidence
    tags = {
        "job_id": result.job_id or "",
        "target_url": redact(result.url),
        "domain": urlparse(result.url).hostname or "",
        "outcome": result.outcome.value,
        "adapter_name": evidence.adapter_name if evidence else "",
        "coverage": evidence.coverage.value if evidence else "",
        "stage_a_model": result.models.get("stage_a", ""),
        "stage_b_model": result.models.get("stage_b", ""),
        "repaired": str(result.repaired).lower(),
        "dry_run": str(job is None).lower(),
        "compose_mode": result.compose_mode or "",
        "refused_gates": ",".join(g.name for g in result.refused_gates),
    }
    if job is not None:
        tags |= {"channel_id": job.channel_id, "message_ts": job.message_ts, "attempt": str(job.attempt)}
    if result.error:
        tags["error"] = redact(result.error)[:500]
    if result.trace_id:
        tags["trace_id"] = result.trace_id
    if result.app_version:
        tags["app_version"] = result.app_version
    if result.app_version_id:
        tags["app_version_id"] = result.app_version_id
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
        "refused_draft_gates": [gate.model_dump(mode="json") for gate in result.refused_gates],
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
        self,
        tracking_uri: str | None,
        spool_dir: Path,
        enabled: bool = True,
        experiment: str = EXPERIMENT,
        app_versions: AppVersions | None = None,
    ) -> None:
        self.enabled = enabled and bool(tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.app_versions = app_versions
        self.spool = DiskSpool(spool_dir, "job_run", self._send)
        self._experiment_id: str | None = None
        if self.enabled:
            lean_mlflow_client()
        if not enabled:
            log.info("MLflow tracking is disabled (MLFLOW_ENABLE_TRACKING=false)")
        elif not tracking_uri:
            log.info("MLflow tracking is off: MLFLOW_TRACKING_URI is not set")

    def start(self) -> None:
        if self.enabled:
            self.spool.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.spool.stop(timeout)

    def backlog(self) -> int:
        return self.spool.backlog()

    def submit(
        self,
        job: JobRunRequest | None,
        result: ComposeResult,
        params: dict[str, Any],
        app_config: dict[str, str] | None = None,
    ) -> None:
        """Spool the finished job; never raises, so tracking cannot fail a job.

        `app_config` lets the run find its app version even when the job ran before it was registered.
        """
        if not self.enabled:
            return
        self.spool.put(
            {
                "kind": "job_run",
                "job": job.model_dump(mode="json") if job else None,
                "result": result.model_dump(mode="json"),
                "params": params,
                "app_config": app_config,
                "finished_at": time.time(),
            }
        )

    def submit_judgement(self, trace_id: str, model: str, verdicts: list[dict[str, str]]) -> None:
        """The online judge's verdicts on a posted reply, for its trace once it is in MLflow; never raises."""
        if self.enabled:
            record = {"trace_id": trace_id, "model": model, "verdicts": verdicts, "since": time.time()}
            self.spool.put({"kind": "judgement"} | record)

    def _send(self, record: Record) -> Record | None:
        if record.get("kind") in ("trace_link", "judgement"):
            if self._on_trace(record) is not None:
                raise Deferred
            return None
        return self._log(record)

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)

    def _experiment(self, client: Any) -> str:
        if self._experiment_id is None:
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        return self._experiment_id

    def _log(self, record: Record) -> Record | None:
        """The job's run, then its trace's link to it (which waits while the trace is still on its way)."""
        client = self._client()
        experiment_id = self._experiment(client)
        job = JobRunRequest.model_validate(record["job"]) if record["job"] else None
        result = ComposeResult.model_validate(record["result"])
        if result.app_version_id is None and record.get("app_config") and self.app_versions is not None:
            result.app_version_id = self.app_versions.register(record["app_config"])
        tags = job_tags(job, result)
        run_id = self._logged_run(client, experiment_id, tags) or self._create_run(
            client, experiment_id, record, result, tags
        )
        if not result.trace_id:
            return None
        trace_tags = {"run_id": run_id} | {key: tags[key] for key in ("app_version", "app_version_id") if key in tags}
        link = {"kind": "trace_link", "trace_id": result.trace_id, "tags": trace_tags, "since": time.time()}
        if result.quality is not None and result.post is not None and result.post.status in POSTED:
            link["quality"] = result.quality.model_dump(mode="json")
        return self._on_trace(link)

    @staticmethod
    def _create_run(
        client: Any, experiment_id: str, record: Record, result: ComposeResult, tags: dict[str, str]
    ) -> str:
        from mlflow.entities import LoggedModelInput, Metric, Param, RunStatus, RunTag

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
        artifacts = job_artifacts(result)
        if record["job"]:  # what the teammate wrote: a 👎 on the reply freezes it into a regression case with it
            artifacts["slack_message.txt"] = record["job"].get("slack_text") or ""
        with tempfile.TemporaryDirectory() as folder:
            for name, content in artifacts.items():
                Path(folder, name).write_text(redact(content), encoding="utf-8")
            client.log_artifacts(run_id, folder)
        if result.app_version_id:
            client.log_inputs(run_id, models=[LoggedModelInput(result.app_version_id)])
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
        client.set_tag(run_id, LOGGED_TAG, "true")
        status = RunStatus.FINISHED if result.outcome.value == "success" else RunStatus.FAILED
        client.set_terminated(run_id, RunStatus.to_string(status), end_time=end_ms)
        return run_id

    def _on_trace(self, record: Record) -> Record | None:
        """Tags the trace with its run and scores it (a trace_link), or logs the online judge's verdicts on it (a
        judgement); while the trace is still on its way (spooled elsewhere), the record waits."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracing.client import TracingClient

        client = TracingClient(self.tracking_uri)
        try:
            client.get_trace_info(record["trace_id"])
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            if time.time() - record["since"] > TRACE_LINK_PATIENCE_SECONDS:
                log.warning("the job's trace never reached MLflow; its run stays unlinked", extra=record)
                return None
            return record
        if record["kind"] == "judgement":
            self._scores_quietly(self._judge_trace, client, record["trace_id"], record["model"], record["verdicts"])
            return None
        client.set_trace_tags(record["trace_id"], record["tags"])
        if record.get("quality"):
            quality = ReplyQuality.model_validate(record["quality"])
            self._scores_quietly(self._score_trace, client, record["trace_id"], quality)
        return None

    @staticmethod
    def _scores_quietly(score: Callable[..., None], *args: Any) -> None:
        """Scores are the trace's extras: MLflow refusing one (a 4xx) costs the scores, never the run and the
        trace's link to it, which the spool would otherwise set aside with them. Unreachable, it waits as ever."""
        from mlflow.exceptions import MlflowException

        try:
            score(*args)
        except MlflowException as exc:
            if exc.get_http_status_code() >= 500:
                raise
            log.warning(
                "MLflow refused the trace's scores; the run and its link stand", extra={"error": str(exc)[:300]}
            )

    @staticmethod
    def _judge_trace(client: Any, trace_id: str, model: str, verdicts: list[dict[str, str]]) -> None:
        """LLM_JUDGE assessments: the share of sentences the judge found entailed, and the contradicted ones."""
        from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback

        present = {a.name for a in client.get_trace_info(trace_id).assessments or []}
        labels = [v["label"] for v in verdicts]
        contradicted = [v["sentence"] for v in verdicts if v["label"] == "contradicted"]
        source = AssessmentSource(source_type=AssessmentSourceType.LLM_JUDGE, source_id=model)
        scores = {
            "judge_entailment": (labels.count("entailed") / len(labels) if labels else 1.0, f"{labels}"),
            "judge_contradicted": (float(len(contradicted)), redact(json.dumps(contradicted))[:2000]),
        }
        for name, (value, rationale) in scores.items():
            if name not in present:
                client.log_assessment(trace_id, Feedback(name=name, value=value, source=source, rationale=rationale))

    @staticmethod
    def _score_trace(client: Any, trace_id: str, quality: ReplyQuality) -> None:
        """The posted reply's gate verdicts and measures as CODE assessments on its trace: live traffic scored at no
        model cost. A replay logs only what the trace lacks."""
        from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback

        scores: dict[str, bool | float] = {
            "gates_passed": quality.passed,
            **{f"gate.{name}": passed for name, passed in quality.gates.items()},
            "grounding_mean": quality.grounding_mean,
            "grounding_min": quality.grounding_min,
            "unsupported_sentences": float(quality.unsupported_sentences),
        }
        if quality.theme_strength is not None:
            scores["theme_strength"] = quality.theme_strength
        present = {a.name for a in client.get_trace_info(trace_id).assessments or []}
        source = AssessmentSource(source_type=AssessmentSourceType.CODE, source_id=SCORER_ID)
        for name, value in scores.items():
            if name not in present:
                client.log_assessment(trace_id, Feedback(name=name, value=value, source=source))

    @staticmethod
    def _logged_run(client: Any, experiment_id: str, tags: dict[str, str]) -> str | None:
        """A replay after a crash mid-log: keep a complete run (its id), remove a partial one (and its stages)."""
        job_id, attempt = tags.get("job_id"), tags.get("attempt")
        if not job_id:
            return None
        query = f"tags.job_id = '{job_id}'" + (f" and tags.attempt = '{attempt}'" if attempt else "")
        runs = client.search_runs([experiment_id], filter_string=query)
        for run in runs:
            if run.data.tags.get(LOGGED_TAG) == "true":
                return run.info.run_id
        for run in runs:
            client.delete_run(run.info.run_id)
        return None
