"""One job end to end: retrieval, Stage A, Stage B, quality gates (one repair), poster.

A job either ends here with an outcome (success, gate_failed, error), or raises
DependencyUnavailable so that ingest retries it later: a dead link is an outcome, a dead
service is not. Each finished stage is checkpointed in ingest's job store; a later attempt
resumes after the last one, so no LLM stage is paid for twice and a failed post is retried
without composing again.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
from prometheus_client import Gauge

from composer.app_version import AppVersions, app_config
from composer.gates import GateConfig, GateReport, run_gates
from composer.llm import LLMClient, LLMUnavailable
from composer.projects import Project
from composer.prompts import PromptStore
from composer.settings import ComposerSettings
from composer.stage_a import StageA, StageAOutput, StageError
from composer.stage_b import StageB, StageBOutput
from composer.tracking import JobTracker
from technoshare_common.http import ServiceClient, ServiceError
from technoshare_common.metrics import JOBS, STAGE_LATENCY, STAGE_RUNS
from technoshare_common.schemas import (
    CheckpointSaved,
    ComposeResult,
    Evidence,
    EvidenceRequest,
    JobCheckpoints,
    JobRunRequest,
    Outcome,
    PostStatus,
    ReplyRequest,
    ReplyResult,
    StageACheckpoint,
    StageBCheckpoint,
)
from technoshare_common.tracing import tracer

log = logging.getLogger(__name__)

# DESIGN's span names and types, per stage.
STAGE_SPANS = {
    "retrieval": ("retrieval.fetch_evidence", "RETRIEVER"),
    "stage_a": ("stage_a.run", "LLM"),
    "stage_b": ("stage_b.run", "LLM"),
    "quality_gates": ("quality_gates.validate", "CHAIN"),
    "repair": ("stage_b.repair", "LLM"),
    "slack_post": ("slack.post_message", "UNKNOWN"),
}

# Per pod, the signal composer's HPA scales on (composer waits on the LLM, so its CPU says little about load).
JOBS_IN_FLIGHT = Gauge(
    "technoshare_composer_jobs_in_flight", "Jobs and dry runs this composer is composing now (posting included)."
)

STAGE_A_PROMPT = "stage_a_extract_facts"
STAGE_B_PROMPT = "stage_b_compose_reply"


class DependencyUnavailable(Exception):
    """A service or the LLM upstream is down; the job should be retried, not failed."""


class Pipeline:
    def __init__(
        self,
        settings: ComposerSettings,
        *,
        llm: LLMClient,
        retrieval: ServiceClient,
        poster: ServiceClient,
        prompts: PromptStore,
        projects: list[Project],
        tracker: JobTracker | None = None,
        app_versions: AppVersions | None = None,
        ingest: ServiceClient | None = None,
    ) -> None:
        self.settings = settings
        self.ingest = ingest  # where checkpoints go; without it (dry runs, evaluation) none are kept
        self.tracker = tracker
        self.app_versions = app_versions or AppVersions(None, settings.mlflow_experiment_name, enabled=False)
        self.retrieval = retrieval
        self.poster = poster
        self.prompts = prompts
        self.stage_a = StageA(settings, llm, retrieval)
        self.stage_b = StageB(settings, llm, projects)
        self.gate_config = GateConfig.from_settings(settings, self.stage_b.themes)

    async def run_job(self, job: JobRunRequest) -> ComposeResult:
        with JOBS_IN_FLIGHT.track_inprogress():  # a try/finally: back down however the job ends
            return await self._run_job(job)

    async def _run_job(self, job: JobRunRequest) -> ComposeResult:
        attributes = {"job_id": job.job_id, "url": str(job.url), "attempt": job.attempt}
        with tracer.span("composer.run_job", span_type="CHAIN", attributes=attributes) as span:
            tracer.tag_trace(job_id=job.job_id)
            saved = job.checkpoints or JobCheckpoints()
            if saved.composed is not None and saved.evidence is not None:
                log.info("resuming a composed job: posting only")
                result = saved.composed.model_copy(update={"evidence": saved.evidence})
            else:
                result = await self._compose(job.job_id, str(job.url), job.slack_text, None, saved)
                if result.outcome != Outcome.error:
                    composed = result.model_copy(update={"evidence": None, "post": None})
                    await self._checkpoint(job.job_id, JobCheckpoints(composed=composed))
            result.trace_id = tracer.current_trace_id()
            tracer.link_trace_to_model(result.app_version_id)
            if self._should_post(result):
                await self._post(job, result)
            span.set_attributes({"outcome": result.outcome.value, "total_tokens": result.usage.total_tokens})
        JOBS.labels("composer", result.outcome.value).inc()
        if self.tracker is not None:
            self.tracker.submit(job, result, self.run_params(), app_config(self.settings, result.prompt_versions))
        return result

    def register_app_version(self) -> None:
        """Registers the configuration the next jobs will run with, so their traces link from the first job."""
        versions = {name: self.prompts.get(name).version for name in (STAGE_A_PROMPT, STAGE_B_PROMPT)}
        self.app_versions.current(app_config(self.settings, versions))

    def run_params(self) -> dict[str, object]:
        """Model settings and quality-gate configuration, as the job's MLflow params."""
        params: dict[str, object] = {
            "gate.tldr_sentences": self.settings.tldr_sentences,
            "gate.summary_min_sentences": self.settings.summary_min_sentences,
            "gate.summary_max_sentences": self.settings.summary_max_sentences,
            "gate.repair_attempts": self.settings.repair_attempts,
            "gate.post_on_gate_failure": self.settings.post_on_gate_failure,
            "stage_a.tools": self.settings.stage_a_tools,
            "stage_a.max_tool_calls": self.settings.max_tool_calls,
            "evidence_window_chars": self.settings.evidence_window_chars,
        }
        for stage, name in (("stage_a", STAGE_A_PROMPT), ("stage_b", STAGE_B_PROMPT)):
            for key, value in self.prompts.get(name).parameters.items():
                params[f"{stage}.{key}"] = value
        return params

    async def compose(self, url: str, slack_text: str, evidence: Evidence | None) -> ComposeResult:
        """The dry run: the same pipeline, never posted."""
        with JOBS_IN_FLIGHT.track_inprogress():
            return await self._compose(None, url, slack_text, evidence)

    def _should_post(self, result: ComposeResult) -> bool:
        if result.reply is None:
            return False
        return result.outcome == Outcome.success or (
            result.outcome == Outcome.gate_failed and self.settings.post_on_gate_failure
        )

    async def _checkpoint(self, job_id: str | None, finished: JobCheckpoints) -> None:
        """Keep a finished stage for the job's next attempt; a failure here only costs that saving."""
        if job_id is None or self.ingest is None:
            return
        try:
            await self.ingest.post(f"/v1/jobs/{job_id}/checkpoints", finished, CheckpointSaved)
        except ServiceError as exc:
            log.warning("could not checkpoint a stage", extra={"stages": finished.stages(), "error": str(exc)})

    async def _compose(
        self,
        job_id: str | None,
        url: str,
        slack_text: str,
        evidence: Evidence | None,
        saved: JobCheckpoints | None = None,
    ) -> ComposeResult:
        result = ComposeResult(
            job_id=job_id,
            url=url,
            outcome=Outcome.error,
            models={"stage_a": self.settings.stage_a_model, "stage_b": self.settings.stage_b_model},
        )
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.job_deadline_seconds):
                await self._stages(result, url, slack_text, evidence, job_id, saved or JobCheckpoints())
        except TimeoutError:
            result.error = f"job deadline of {self.settings.job_deadline_seconds}s exceeded"
        except StageError as exc:
            result.error = str(exc)
        except ServiceError as exc:
            if exc.retryable:
                raise DependencyUnavailable(str(exc)) from exc
            result.error = str(exc)
        except LLMUnavailable as exc:
            raise DependencyUnavailable(f"llm: {exc}") from exc
        except openai.APIStatusError as exc:
            result.error = f"llm-gateway refused the call: HTTP {exc.status_code}: {exc.message}"
        if result.app_version_id is None:
            # A new version's registration starts with its first job, and has usually landed by its end.
            result.app_version_id = self.app_versions.registered_id(result.app_version)
        result.timings["total"] = round(time.perf_counter() - start, 4)
        if result.error:
            log.warning("job ended in error", extra={"error": result.error})
        return result

    @asynccontextmanager
    async def _stage(self, result: ComposeResult, stage: str) -> AsyncIterator[Any]:
        """Times a stage into the result and Prometheus, inside the stage's span of the job's trace."""
        name, span_type = STAGE_SPANS[stage]
        start = time.perf_counter()
        ok = False
        try:
            with tracer.span(name, span_type=span_type) as span:
                yield span
            ok = True
        finally:
            elapsed = time.perf_counter() - start
            result.timings[stage] = round(elapsed, 4)
            STAGE_LATENCY.labels(stage).observe(elapsed)
            STAGE_RUNS.labels(stage, "ok" if ok else "error").inc()

    async def _stages(
        self,
        result: ComposeResult,
        url: str,
        slack_text: str,
        evidence: Evidence | None,
        job_id: str | None,
        saved: JobCheckpoints,
    ) -> None:
        evidence = evidence or saved.evidence
        fetched = evidence is None
        async with self._stage(result, "retrieval") as span:
            if evidence is None:
                evidence = await self.retrieval.post("/v1/evidence", EvidenceRequest(url=url), Evidence)
            span.set_attributes(
                {
                    "url": url,
                    "adapter": evidence.adapter_name,
                    "coverage": evidence.coverage.value,
                    "snippet_count": len(evidence.snippets),
                }
            )
        if fetched:
            await self._checkpoint(job_id, JobCheckpoints(evidence=evidence))
        result.evidence = evidence

        prompt_a = self.prompts.get(STAGE_A_PROMPT)
        prompt_b = self.prompts.get(STAGE_B_PROMPT)
        result.prompt_versions = {STAGE_A_PROMPT: prompt_a.version, STAGE_B_PROMPT: prompt_b.version}
        result.app_version, result.app_version_id = self.app_versions.current(
            app_config(self.settings, result.prompt_versions)
        )

        if saved.stage_a is not None:
            stage_a = StageAOutput(
                saved.stage_a.facts, saved.stage_a.usage, saved.stage_a.model, saved.stage_a.tool_calls
            )
        else:
            async with self._stage(result, "stage_a") as span:
                stage_a = await self.stage_a.run(prompt_a, evidence, slack_text)
                sources = [source.url for source in evidence.sources] + [s.source_url for s in stage_a.extra_snippets]
                span.set_attributes({"model": stage_a.model, "tool_calls": stage_a.tool_calls, "sources": sources})
            checkpoint_a = StageACheckpoint(
                facts=stage_a.facts, usage=stage_a.usage, model=stage_a.model, tool_calls=stage_a.tool_calls
            )
            await self._checkpoint(job_id, JobCheckpoints(stage_a=checkpoint_a))
        result.facts = stage_a.facts
        result.tool_calls = stage_a.tool_calls
        result.usage = stage_a.usage
        result.models["stage_a"] = stage_a.model

        if saved.stage_b is not None:
            draft = StageBOutput(
                saved.stage_b.content, saved.stage_b.usage, saved.stage_b.model, saved.stage_b.messages
            )
        else:
            async with self._stage(result, "stage_b") as span:
                draft = await self.stage_b.compose(prompt_b, evidence, stage_a.facts, slack_text)
                span.set_attributes({"model": draft.model})
            checkpoint_b = StageBCheckpoint(
                content=draft.content, usage=draft.usage, model=draft.model, messages=draft.messages
            )
            await self._checkpoint(job_id, JobCheckpoints(stage_b=checkpoint_b))
        result.usage += draft.usage
        result.models["stage_b"] = draft.model

        async with self._stage(result, "quality_gates") as span:
            report = run_gates(draft.content, self.gate_config)
            total = len(report.results)
            span.set_attributes(
                {
                    "gate_failures": len(report.failures),
                    "gate_total": total,
                    "gate_pass_rate": (total - len(report.failures)) / total if total else 0.0,
                }
            )
        for _ in range(self.settings.repair_attempts):
            if report.passed:
                break
            log.info("gates failed; repairing", extra={"failures": [g.name for g in report.failures]})
            async with self._stage(result, "repair"):
                draft = await self.stage_b.repair(prompt_b, draft, report.failures)
                report = run_gates(draft.content, self.gate_config)
            result.usage += draft.usage
            result.repaired = True
        self._record(result, report)

    @staticmethod
    def _record(result: ComposeResult, report: GateReport) -> None:
        result.reply = report.reply
        result.text = report.text
        result.gates = report.results
        result.outcome = Outcome.success if report.passed else Outcome.gate_failed

    async def _post(self, job: JobRunRequest, result: ComposeResult) -> None:
        assert result.reply is not None and result.evidence is not None
        request = ReplyRequest(
            job_id=job.job_id,
            channel_id=job.channel_id,
            thread_ts=job.thread_ts,
            source_url=str(job.url),
            reply=result.reply,
            coverage=result.evidence.coverage,
        )
        try:
            async with self._stage(result, "slack_post"):
                posted = await self.poster.post("/v1/replies", request, ReplyResult)
        except ServiceError as exc:
            raise DependencyUnavailable(str(exc)) from exc
        result.post = posted
        if posted.status == PostStatus.failed:
            if posted.retryable:
                raise DependencyUnavailable(f"slack: {posted.error}")
            result.outcome = Outcome.error
            result.error = f"slack: {posted.error}"
