"""One job end to end: retrieval, composing (composer.compose), poster.

A job either ends here with an outcome (success, degraded, gate_failed, unreadable, error), or raises
DependencyUnavailable so that ingest retries it later: a dead link is an outcome (answered with a short
notice, UNREADABLE_LINK_REPLY), a dead service is not. Each finished stage is checkpointed in ingest's job
store; a later attempt resumes after the last one, so no LLM stage is paid for twice and a failed post is
retried without composing again.
"""

import asyncio
import logging
import time

import openai
from prometheus_client import Counter, Gauge

from composer.app_version import AppVersions, app_config
from composer.compose import ReplyComposer, stage
from composer.entailment import ONLINE_PERSONA, EntailmentJudge, sampled
from composer.llm import BUDGET_EXCEEDED, LLMClient, LLMUnavailable
from composer.notices import transient, unreadable_body, unreadable_notice
from composer.projects import Project
from composer.prompts import PromptStore
from composer.quality.evidence import EvidenceIndex
from composer.quality.live import count_live
from composer.quality.terms import reply_sentences
from composer.settings import ComposerSettings
from composer.stage_a import StageError
from composer.tracking import JobTracker
from technoshare_common.http import ServiceClient, ServiceError
from technoshare_common.metrics import JOB_ATTEMPTS
from technoshare_common.schemas import (
    CheckpointSaved,
    ComposeResult,
    Evidence,
    EvidenceRequest,
    JobCheckpoints,
    JobRunRequest,
    NoticeDelivery,
    NoticeRunRequest,
    Outcome,
    PostStatus,
    ReplyRequest,
    ReplyResult,
    SearchRequest,
    SearchResponse,
    UnreadableKind,
)
from technoshare_common.tracing import tracer

log = logging.getLogger(__name__)

# Per pod, the signal composer's HPA scales on (composer waits on the LLM, so its CPU says little about load).
JOBS_IN_FLIGHT = Gauge(
    "technoshare_composer_jobs_in_flight", "Jobs and dry runs this composer is composing now (posting included)."
)
COMPOSED_REFUSED = Counter(
    "technoshare_composed_checkpoints_refused_total",
    "Composed replies from ingest's store that failed their gates again before posting, and were composed anew: "
    "none should; one means something other than composer wrote the job's checkpoints.",
)


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
        self.ingest = ingest  # where checkpoints go; without it (dry runs) none are kept
        self.tracker = tracker
        self.retrieval = retrieval
        self.poster = poster
        self.composer = ReplyComposer(
            settings, llm=llm, prompts=prompts, projects=projects, search=self._search, app_versions=app_versions
        )
        self.online_judge = (
            EntailmentJudge(llm, settings.judge_model, persona=ONLINE_PERSONA) if settings.judge_model else None
        )
        self._scoring: set[asyncio.Task[None]] = set()  # the online judge's calls in flight (held, or they are lost)

    async def _search(self, request: SearchRequest) -> SearchResponse:
        return await self.retrieval.post("/v1/search", request, SearchResponse)

    async def run_job(self, job: JobRunRequest) -> ComposeResult:
        with JOBS_IN_FLIGHT.track_inprogress():  # a try/finally: back down however the job ends
            return await self._run_job(job)

    async def _run_job(self, job: JobRunRequest) -> ComposeResult:
        attributes = {"job_id": job.job_id, "url": str(job.url), "attempt": job.attempt}
        with tracer.span("composer.run_job", span_type="CHAIN", attributes=attributes) as span:
            tracer.tag_trace(job_id=job.job_id)
            saved = self._trusted(self._same_version(job.checkpoints or JobCheckpoints()))
            resumed = saved.composed is not None and (saved.evidence is not None or saved.composed.notice is not None)
            if resumed:
                assert saved.composed is not None
                log.info("resuming a composed job: posting only")
                result = saved.composed.model_copy(update={"evidence": saved.evidence})
            else:
                result = await self._compose(
                    job.job_id, str(job.url), job.slack_text, None, saved, job.final_attempt, job.attempt
                )
                if result.outcome != Outcome.error:
                    composed = result.model_copy(update={"evidence": None, "post": None})
                    await self._checkpoint(job.job_id, JobCheckpoints(composed=composed), job.attempt)
            result.trace_id = tracer.current_trace_id()
            tracer.link_trace_to_model(result.app_version_id)
            if self._should_post(result):
                await self._post(job, result)
            posted_now = result.post is not None and result.post.status in (PostStatus.posted, PostStatus.dry_run)
            if posted_now or (result.post is None and not resumed):  # once: a repost is already_posted, a resume
                count_live(result, job.channel_id)  # of an unposted reply was counted when it was composed
            if self._judged_online(job, result):
                task = asyncio.create_task(self._judge_online(result), name=f"online-judge-{job.job_id}")
                self._scoring.add(task)
                task.add_done_callback(self._scoring.discard)
            span.set_attributes(
                {
                    "outcome": result.outcome.value,
                    "compose_mode": result.compose_mode or "",
                    "total_tokens": result.usage.total_tokens,
                }
            )
        JOB_ATTEMPTS.labels(result.outcome.value).inc()
        if self.tracker is not None:
            self.tracker.submit(job, result, self.run_params(), app_config(self.settings, result.prompt_versions))
        return result

    def _judged_online(self, job: JobRunRequest, result: ComposeResult) -> bool:
        """A sampled share of the replies posted now (ONLINE_JUDGE_SAMPLE_RATE), when a judge model is set."""
        return (
            self.online_judge is not None
            and self.tracker is not None
            and result.reply is not None
            and result.evidence is not None
            and result.trace_id is not None
            and result.post is not None
            and result.post.status in (PostStatus.posted, PostStatus.dry_run)
            and sampled(f"online:{job.job_id}", self.settings.online_judge_sample_rate)
        )

    async def _judge_online(self, result: ComposeResult) -> None:
        """The judge's verdicts on a posted reply, for its trace as LLM_JUDGE assessments: after the post, so the
        reply never waits for them, and a judge that fails costs nothing but the scores."""
        assert self.online_judge is not None and self.tracker is not None
        assert result.reply is not None and result.evidence is not None and result.trace_id is not None
        sentences = reply_sentences(result.reply.tldr) + reply_sentences(result.reply.summary)
        try:
            verdicts, _ = await self.online_judge.judge(sentences, EvidenceIndex.from_evidence(result.evidence))
        except Exception as exc:
            log.warning("the online judge failed; the reply stays unjudged", extra={"error": str(exc)[:300]})
            return
        labels = [{"sentence": v.sentence, "label": v.label} for v in verdicts]
        self.tracker.submit_judgement(result.trace_id, self.online_judge.model, labels)

    async def run_notice(self, job: NoticeRunRequest) -> ComposeResult:
        """A link ingest refused (malformed, a port out of range, too long): never fetched, answered with the
        unreadable notice as UNREADABLE_LINK_REPLY says, so it is not left in silence."""
        with JOBS_IN_FLIGHT.track_inprogress():
            notice = unreadable_notice(UnreadableKind.malformed, self.settings)
            result = ComposeResult(
                job_id=job.job_id,
                url=job.url,
                outcome=Outcome.unreadable,
                notice=notice,
                text=notice.text,
                error=f"refused at ingest: {job.problem}",
            )
            with tracer.span("composer.run_notice", span_type="CHAIN", attributes={"job_id": job.job_id}):
                tracer.tag_trace(job_id=job.job_id)
                if self._should_post(result):
                    await self._post(job, result)
                result.trace_id = tracer.current_trace_id()
        JOB_ATTEMPTS.labels(result.outcome.value).inc()
        return result

    def register_app_version(self) -> None:
        self.composer.register_app_version()

    def run_params(self) -> dict[str, object]:
        return self.composer.run_params()

    async def compose(self, url: str, slack_text: str, evidence: Evidence | None) -> ComposeResult:
        """The dry run: the same pipeline, never posted."""
        with JOBS_IN_FLIGHT.track_inprogress():
            return await self._compose(None, url, slack_text, evidence, final_attempt=True, degrade=False)

    def _should_post(self, result: ComposeResult) -> bool:
        if result.notice is not None:
            return result.notice.delivery != NoticeDelivery.none
        if result.reply is None:
            return False
        return result.outcome in (Outcome.success, Outcome.degraded) or (
            result.outcome == Outcome.gate_failed and self.settings.post_on_gate_failure
        )

    def _trusted(self, saved: JobCheckpoints) -> JobCheckpoints:
        """Without a composed reply that fails its gates again: the job composes anew rather than post it."""
        if saved.composed is None or self.composer.still_fit_to_post(saved.composed, saved.evidence):
            return saved
        log.error("a composed checkpoint fails the gates again; composing anew", extra={"stages": saved.stages()})
        COMPOSED_REFUSED.inc()
        return saved.model_copy(update={"composed": None})

    def _same_version(self, saved: JobCheckpoints) -> JobCheckpoints:
        """The checkpoints a job may resume from: a stage made by another app version (or by one from before stages
        carried theirs) is dropped, so a rollout between attempts never posts what old prompts or gates made; the
        evidence, the link's own, stays. Each stage carries its own version: one job can hold stages of two."""
        current = self.composer.current_app_version()
        stale = {
            name
            for name, stage in (("stage_a", saved.stage_a), ("stage_b", saved.stage_b), ("composed", saved.composed))
            if stage is not None and stage.app_version != current
        }
        if stale:
            log.info("dropping checkpoints of another app version", extra={"stages": sorted(stale), "now": current})
        return saved.model_copy(update=dict.fromkeys(stale))

    def _stamped(self, finished: JobCheckpoints) -> JobCheckpoints:
        """The stages marked with the app version that made them (a composed reply may carry its own already)."""
        stamp = {"app_version": self.composer.current_app_version()}
        composed = finished.composed
        return finished.model_copy(
            update={
                "stage_a": finished.stage_a.model_copy(update=stamp) if finished.stage_a else None,
                "stage_b": finished.stage_b.model_copy(update=stamp) if finished.stage_b else None,
                "composed": composed.model_copy(update=stamp) if composed and not composed.app_version else composed,
            }
        )

    async def _checkpoint(self, job_id: str | None, finished: JobCheckpoints, attempt: int | None) -> None:
        """Keep a finished stage for the job's next attempt; a failure here only costs that saving. A 409 means
        another attempt holds the job now (a lease taken over): this one stops, before paying or posting more."""
        if job_id is None or self.ingest is None:
            return
        try:
            await self.ingest.post(
                f"/v1/jobs/{job_id}/checkpoints",
                self._stamped(finished).model_copy(update={"attempt": attempt}),
                CheckpointSaved,
            )
        except ServiceError as exc:
            if exc.status_code == 409:
                raise DependencyUnavailable(f"a newer attempt holds the job: {exc}") from exc
            log.warning("could not checkpoint a stage", extra={"stages": finished.stages(), "error": str(exc)})

    async def _compose(
        self,
        job_id: str | None,
        url: str,
        slack_text: str,
        evidence: Evidence | None,
        saved: JobCheckpoints | None = None,
        final_attempt: bool = False,
        attempt: int | None = None,
        degrade: bool = True,
    ) -> ComposeResult:
        """`degrade`: a dry run never answers with the quoted reply (the evaluation suite must see the model fail)."""
        result = ComposeResult(
            job_id=job_id,
            url=url,
            outcome=Outcome.error,
            models={"stage_a": self.settings.stage_a_model, "stage_b": self.settings.stage_b_model},
        )
        saved = saved or JobCheckpoints()
        start = time.perf_counter()

        async def checkpoint(finished: JobCheckpoints) -> None:
            await self._checkpoint(job_id, finished, attempt)

        try:
            async with asyncio.timeout(self.settings.job_deadline_seconds):
                evidence = await self._evidence(result, url, evidence or saved.evidence, job_id, final_attempt, attempt)
                if evidence is not None:
                    await self.composer.compose(
                        result, evidence, slack_text, saved, checkpoint, final_attempt, degrade=degrade
                    )
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
        except openai.RateLimitError as exc:  # the budget is spent and LLM_UNAVAILABLE_REPLY=retry: a later attempt
            if exc.code != BUDGET_EXCEEDED or final_attempt:
                result.error = f"llm-gateway refused the call: HTTP {exc.status_code}: {exc.message}"
            else:
                raise DependencyUnavailable(f"llm: {exc}") from exc
        except openai.APIStatusError as exc:
            result.error = f"llm-gateway refused the call: HTTP {exc.status_code}: {exc.message}"
        if result.app_version_id is None:
            # A new version's registration starts with its first job, and has usually landed by its end.
            result.app_version_id = self.composer.app_versions.registered_id(result.app_version)
        result.timings["total"] = round(time.perf_counter() - start, 4)
        if result.error:
            log.warning("job ended in error", extra={"error": result.error})
        return result

    async def _evidence(
        self,
        result: ComposeResult,
        url: str,
        evidence: Evidence | None,
        job_id: str | None,
        final_attempt: bool,
        attempt: int | None,
    ) -> Evidence | None:
        """The link's evidence; None, with the outcome `unreadable` and its notice, when the link cannot be read."""
        fetched = evidence is None
        async with stage(result, "retrieval") as span:
            if evidence is None:
                try:
                    evidence = await self.retrieval.post("/v1/evidence", EvidenceRequest(url=url), Evidence)
                except ServiceError as exc:
                    if exc.status_code != 422:
                        raise
                    unreadable = unreadable_body(exc.detail)
                    if transient(exc.detail) and not final_attempt:
                        raise DependencyUnavailable(f"the linked site: {exc}") from exc
                    log.info("the link cannot be read", extra={"error": str(exc)[:300]})
                    result.outcome = Outcome.unreadable
                    result.error = str(exc)
                    result.notice = unreadable_notice(unreadable.kind if unreadable else None, self.settings)
                    result.text = result.notice.text
                    span.set_attributes({"url": url, "unreadable": str(exc)[:300]})
                    return None
            span.set_attributes(
                {
                    "url": url,
                    "adapter": evidence.adapter_name,
                    "coverage": evidence.coverage.value,
                    "snippet_count": len(evidence.snippets),
                }
            )
        if fetched:
            await self._checkpoint(job_id, JobCheckpoints(evidence=evidence), attempt)
        result.evidence = evidence
        return evidence

    async def _post(self, job: JobRunRequest | NoticeRunRequest, result: ComposeResult) -> None:
        request = ReplyRequest(
            job_id=job.job_id,
            channel_id=job.channel_id,
            thread_ts=job.thread_ts,
            message_ts=job.message_ts,
            source_url=str(job.url),
            reply=None if result.notice is not None else result.reply,
            notice=result.notice,
            coverage=result.evidence.coverage if result.evidence is not None else None,
        )
        try:
            async with stage(result, "slack_post"):
                posted = await self.poster.post("/v1/replies", request, ReplyResult)
        except ServiceError as exc:
            raise DependencyUnavailable(str(exc)) from exc
        result.post = posted
        if posted.status == PostStatus.failed:
            if posted.retryable:
                raise DependencyUnavailable(f"slack: {posted.error}")
            result.outcome = Outcome.error
            result.error = f"slack: {posted.error}"
