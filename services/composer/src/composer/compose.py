"""From evidence to a gated reply: the compose modes, the quality gates with their repair, the degraded reply.

This is the part of a job that needs no service but the LLM, so the evaluation suite runs it directly on
pinned evidence; composer.pipeline adds fetching, checkpoints' storage and posting around it.

- abstractive: Stage A extracts facts, Stage B writes the reply, the gates judge it (one repair). A draft the
  gates still refuse is answered by the extractive reply (compose mode `extractive_fallback`), so every link gets
  a postable reply; POST_ON_GATE_FAILURE=true posts the refused draft instead.
- extractive: the reply quotes the source's best sentences; the model only picks the TL;DR
  (composer.extractive). Chosen per model by COMPOSE_MODE=auto.
- degraded: the LLM is unavailable, so the extractive reply is made without it and labelled; the outcome is
  `degraded`, not a silent retry (LLM_UNAVAILABLE_REPLY).
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import openai

from composer.app_version import AppVersions, app_config, version_name
from composer.entailment import EntailmentJudge, sampled
from composer.extractive import (
    DEGRADED_NOTE,
    ExtractiveComposer,
    ExtractiveDraft,
    gates_for_source,
    quotable_sentences,
)
from composer.llm import BUDGET_EXCEEDED, LLMClient, LLMUnavailable
from composer.notices import unreadable_notice
from composer.projects import Project
from composer.prompts import PromptStore, prompt_length
from composer.quality.content import GateContext
from composer.quality.evidence import EvidenceIndex
from composer.quality.gates import GateConfig, GateReport, check_reply, run_gates
from composer.quality.live import reply_quality
from composer.quality.terms import reply_sentences
from composer.quality.themes import ThemeStrength, earned_themes, theme_strengths
from composer.settings import ComposeMode, ComposerSettings, LLMUnavailableReply
from composer.stage_a import SearchFunction, StageA, StageAOutput, StageError
from composer.stage_b import StageB, StageBOutput
from technoshare_common.metrics import STAGE_LATENCY, STAGE_RUNS
from technoshare_common.schemas import (
    ComposeResult,
    Evidence,
    GateResult,
    JobCheckpoints,
    Outcome,
    StageACheckpoint,
    StageBCheckpoint,
    UnreadableKind,
)
from technoshare_common.slack_format import render_text
from technoshare_common.tracing import tracer

log = logging.getLogger(__name__)

STAGE_A_PROMPT = "stage_a_extract_facts"
STAGE_B_PROMPT = "stage_b_compose_reply"
SELECT_PROMPT = "stage_b_select_sentences"
# What a live job may also use: the abstractive mode's extractive fallback picks its TL;DR with this prompt.
FALLBACK_PROMPTS = {ComposeMode.abstractive: (SELECT_PROMPT,), ComposeMode.extractive: ()}
MODE_PROMPTS = {
    ComposeMode.abstractive: (STAGE_A_PROMPT, STAGE_B_PROMPT),
    ComposeMode.extractive: (SELECT_PROMPT,),
}

# DESIGN's span names and types, per stage.
STAGE_SPANS = {
    "retrieval": ("retrieval.fetch_evidence", "RETRIEVER"),
    "stage_a": ("stage_a.run", "LLM"),
    "stage_b": ("stage_b.run", "LLM"),
    "quality_gates": ("quality_gates.validate", "CHAIN"),
    "repair": ("stage_b.repair", "LLM"),
    "fallback": ("stage_b.extractive_fallback", "LLM"),
    "entailment": ("quality_gates.entailment", "LLM"),
    "slack_post": ("slack.post_message", "UNKNOWN"),
}

Checkpoint = Callable[[JobCheckpoints], Awaitable[None]]

FALLBACK_MODE = "extractive_fallback"

# A source with fewer sentences that could be quoted gets a short notice: a reply would have to invent or repeat.
MIN_QUOTABLE = 2


async def _no_checkpoint(_: JobCheckpoints) -> None:
    return None


@asynccontextmanager
async def stage(result: ComposeResult, name: str) -> AsyncIterator[Any]:
    """Times a stage into the result and Prometheus, inside the stage's span of the job's trace."""
    span_name, span_type = STAGE_SPANS[name]
    start = time.perf_counter()
    ok = False
    try:
        with tracer.span(span_name, span_type=span_type) as span:
            yield span
        ok = True
    finally:
        elapsed = time.perf_counter() - start
        result.timings[name] = round(elapsed, 4)
        STAGE_LATENCY.labels(name).observe(elapsed)
        STAGE_RUNS.labels(name, "ok" if ok else "error").inc()


def _llm_unavailable(exc: BaseException) -> bool:
    """What LLM_UNAVAILABLE_REPLY=degraded answers with the quoted reply: the gateway gave up, or no budget is left."""
    if isinstance(exc, LLMUnavailable):
        return True
    return isinstance(exc, openai.RateLimitError) and exc.code == BUDGET_EXCEEDED


class ReplyComposer:
    def __init__(
        self,
        settings: ComposerSettings,
        *,
        llm: LLMClient,
        prompts: PromptStore,
        projects: list[Project],
        search: SearchFunction | None = None,
        app_versions: AppVersions | None = None,
    ) -> None:
        self.settings = settings
        self.prompts = prompts
        self.projects = projects
        self.app_versions = app_versions or AppVersions(None, settings.mlflow_experiment_name, enabled=False)
        self.mode = settings.resolved_compose_mode()
        self.stage_a = StageA(settings, llm, search)
        self.stage_b = StageB(settings, llm, projects)
        self.gate_config = GateConfig.from_settings(settings, self.stage_b.themes)
        self.extractive = ExtractiveComposer(settings, llm, self.gate_config.content.max_similarity, projects)
        self.judge = EntailmentJudge(llm, settings.judge_model) if settings.judge_model else None

    def prompt_versions(self) -> dict[str, str]:
        """The mode's prompts and its fallback's: both are part of the job's app version."""
        names = MODE_PROMPTS[self.mode] + FALLBACK_PROMPTS[self.mode]
        return {name: self.prompts.get(name).version for name in names}

    def still_fit_to_post(self, composed: ComposeResult, evidence: Evidence | None) -> bool:
        """A composed checkpoint, judged again before it is posted: it comes back from ingest's store, which other
        pods can write to, so it is trusted no more than a fresh draft. A notice must be one this composer words; a
        reply must pass every gate on its evidence (a `gate_failed` reply, posted on purpose, the markup gate)."""
        if composed.notice is not None:
            kinds: list[UnreadableKind | None] = [*UnreadableKind, None]
            return composed.notice.text in {unreadable_notice(kind, self.settings).text for kind in kinds}
        if composed.reply is None or evidence is None:
            return False
        index = EvidenceIndex.from_evidence(evidence)
        config = gates_for_source(self.gate_config, index)  # the gates as the reply first met them
        results = check_reply(composed.reply, render_text(composed.reply), config, GateContext(index, self.projects))
        if composed.outcome == Outcome.gate_failed:
            results = [r for r in results if r.name == "no_markup"]
        return all(r.passed for r in results)

    def current_app_version(self) -> str:
        """The name of the app version the next job runs with."""
        return version_name(app_config(self.settings, self.prompt_versions()))

    def register_app_version(self) -> None:
        """Registers the configuration the next jobs will run with, so their traces link from the first job."""
        self.app_versions.current(app_config(self.settings, self.prompt_versions()))

    def run_params(self) -> dict[str, object]:
        """Model settings and quality-gate configuration, as the job's MLflow params."""
        params: dict[str, object] = {
            "compose_mode": self.mode.value,
            "gate.tldr_sentences": self.settings.tldr_sentences,
            "gate.summary_min_sentences": self.settings.summary_min_sentences,
            "gate.summary_max_sentences": self.settings.summary_max_sentences,
            "gate.repair_attempts": self.settings.repair_attempts,
            "gate.post_on_gate_failure": self.settings.post_on_gate_failure,
            "gate.content": ",".join(sorted(self.gate_config.content.enabled)),
            "stage_a.tools": self.settings.stage_a_tools,
            "stage_a.max_tool_calls": self.settings.max_tool_calls,
            "evidence_window_chars": self.settings.evidence_window_chars,
        }
        for name in MODE_PROMPTS[self.mode]:
            for key, value in self.prompts.get(name).parameters.items():
                params[f"{name}.{key}"] = value
        return params

    async def compose_evidence(self, url: str, slack_text: str, evidence: Evidence) -> ComposeResult:
        """A dry run on given evidence, with no service but the LLM: what the evaluation suite runs. It never answers
        with a substitute (the degraded reply, the extractive fallback): a suite that scored the quoted reply would
        pass a model that is down or a prompt whose drafts all fail."""
        result = ComposeResult(url=url, outcome=Outcome.error)
        start = time.perf_counter()
        try:
            await self.compose(result, evidence, slack_text, degrade=False)
        except LLMUnavailable as exc:
            result.error = f"llm unavailable: {exc}"
        except StageError as exc:
            result.error = str(exc)
        except openai.APIStatusError as exc:
            result.error = f"llm-gateway refused the call: HTTP {exc.status_code}: {exc.message}"
        result.evidence = evidence
        if result.app_version_id is None:  # registered in the background meanwhile, as a job's is
            result.app_version_id = self.app_versions.registered_id(result.app_version)
        result.timings["total"] = round(time.perf_counter() - start, 4)
        return result

    async def compose(
        self,
        result: ComposeResult,
        evidence: Evidence,
        slack_text: str,
        saved: JobCheckpoints | None = None,
        checkpoint: Checkpoint = _no_checkpoint,
        final_attempt: bool = True,
        degrade: bool = True,
    ) -> None:
        """Fills `result` with the gated reply and its outcome. An unavailable LLM gets the degraded reply, unless
        LLM_UNAVAILABLE_REPLY=retry and another attempt will follow: then LLMUnavailable is raised. `degrade`: a live
        job may answer with a substitute (the degraded reply, the extractive fallback); a dry run never does."""
        saved = saved or JobCheckpoints()
        index = EvidenceIndex.from_evidence(evidence)
        context = GateContext(index, self.projects)
        # Off the event loop: the embedding model takes about 70 ms of CPU (the gates reuse the strengths, memoised).
        themes = await asyncio.to_thread(
            earned_themes, index, self.projects, self.gate_config.content.min_theme_strength
        )
        result.compose_mode = self.mode.value
        if len(quotable_sentences(index, self.gate_config.content.max_similarity)) < MIN_QUOTABLE:
            result.outcome = Outcome.unreadable
            result.notice = unreadable_notice(UnreadableKind.too_little_text, self.settings)
            result.text = result.notice.text
            return
        result.prompt_versions = self.prompt_versions()
        result.app_version, result.app_version_id = self.app_versions.current(
            app_config(self.settings, result.prompt_versions)
        )
        try:
            if self.mode == ComposeMode.extractive:
                await self._quoted(result, evidence, index, context, themes)
            else:
                await self._abstractive(result, evidence, slack_text, context, themes, saved, checkpoint, degrade)
        except (LLMUnavailable, openai.RateLimitError) as exc:
            retry = self.settings.llm_unavailable_reply == LLMUnavailableReply.retry and not final_attempt
            if not _llm_unavailable(exc) or retry or not degrade:
                raise
            log.warning("LLM unavailable; posting the quoted reply", extra={"error": str(exc)[:300]})
            await self._quoted(result, evidence, index, context, themes, mode="degraded")

    async def _gate(self, result: ComposeResult, content: str, config: GateConfig, context: GateContext) -> GateReport:
        async with stage(result, "quality_gates") as span:
            report = run_gates(content, config, context)
            total = len(report.results)
            span.set_attributes(
                {
                    "gate_failures": len(report.failures),
                    "gate_total": total,
                    "gate_pass_rate": (total - len(report.failures)) / total if total else 0.0,
                }
            )
        return report

    async def _quoted(
        self,
        result: ComposeResult,
        evidence: Evidence,
        index: EvidenceIndex,
        context: GateContext,
        themes: Sequence[ThemeStrength],
        *,
        mode: str = "extractive",
    ) -> None:
        """The extractive reply: the model picks the TL;DR, or, degraded, the ranking does and the reply says so.
        As the abstractive mode's fallback it runs in a span of its own, after the refused draft's."""
        degraded = mode == "degraded"
        span_stage = "fallback" if mode == FALLBACK_MODE else "stage_b"
        async with stage(result, span_stage) as span:
            prompt = None if degraded else self.prompts.get(SELECT_PROMPT)
            # The fallback answers a refused draft: a model that fails its pick now leaves the pick to the ranking.
            optional = mode == FALLBACK_MODE
            draft = await self.extractive.compose(prompt, evidence, index, themes, model_optional=optional)
            span.set_attributes(
                {
                    "compose_mode": mode,
                    "selection": draft.selection,
                    "model": draft.model or "",
                    "prompt_length": draft.prompt_length,
                }
            )
            if result.refused_gates:
                span.set_attribute("refused_gates", [g.name for g in result.refused_gates])
        result.usage += draft.usage
        result.models["stage_b"] = draft.model or self.settings.stage_b_model
        if result.facts is None:  # Stage A did not run
            result.models.pop("stage_a", None)
        if degraded:
            draft.reply.notes.insert(0, DEGRADED_NOTE)
        result.compose_mode = mode
        await self._finish(result, draft, context, Outcome.degraded if degraded else Outcome.success)

    async def _finish(
        self, result: ComposeResult, draft: ExtractiveDraft, context: GateContext, passed: Outcome
    ) -> None:
        config = gates_for_source(self.gate_config, context.evidence)
        report = await self._gate(result, draft.reply.model_dump_json(), config, context)
        if report.reply is not None and draft.reply.notes:  # code's notes: parse_reply drops any a model wrote
            report.reply.notes = list(draft.reply.notes)
            report.text = render_text(report.reply)
        self._record(result, report, passed, context)

    async def _abstractive(
        self,
        result: ComposeResult,
        evidence: Evidence,
        slack_text: str,
        context: GateContext,
        themes: Sequence[ThemeStrength],
        saved: JobCheckpoints,
        checkpoint: Checkpoint,
        fallback: bool = True,
    ) -> None:
        link_context = context  # the link's own evidence: what the fallback quotes, never a searched page
        prompt_a = self.prompts.get(STAGE_A_PROMPT)
        prompt_b = self.prompts.get(STAGE_B_PROMPT)
        if saved.stage_a is not None:
            stage_a = StageAOutput(
                saved.stage_a.facts, saved.stage_a.usage, saved.stage_a.model, saved.stage_a.tool_calls
            )
        else:
            async with stage(result, "stage_a") as span:
                stage_a = await self.stage_a.run(prompt_a, evidence, slack_text)
                sources = [source.url for source in evidence.sources] + [s.source_url for s in stage_a.extra_snippets]
                span.set_attributes({"model": stage_a.model, "tool_calls": stage_a.tool_calls, "sources": sources})
            await checkpoint(
                JobCheckpoints(
                    stage_a=StageACheckpoint(
                        facts=stage_a.facts, usage=stage_a.usage, model=stage_a.model, tool_calls=stage_a.tool_calls
                    )
                )
            )
        if stage_a.extra_snippets:  # what Stage A read with its search tool is evidence too
            index = EvidenceIndex.from_evidence(evidence, [snippet.text for snippet in stage_a.extra_snippets])
            context = GateContext(index, context.projects)
            await asyncio.to_thread(theme_strengths, index, context.projects)  # memoised for the gates, off the loop
        result.facts = stage_a.facts
        result.tool_calls = stage_a.tool_calls
        result.usage += stage_a.usage
        result.models["stage_a"] = stage_a.model
        earned = [t.theme for t in themes]
        config = gates_for_source(self.gate_config, context.evidence)
        lengths = (config.tldr_sentences, config.summary_min)

        if saved.stage_b is not None:
            draft = StageBOutput(
                saved.stage_b.content, saved.stage_b.usage, saved.stage_b.model, saved.stage_b.messages
            )
        else:
            async with stage(result, "stage_b") as span:
                draft = await self.stage_b.compose(prompt_b, evidence, stage_a.facts, slack_text, earned, lengths)
                length = prompt_length(draft.messages)
                span.set_attributes({"compose_mode": "abstractive", "model": draft.model, "prompt_length": length})
            await checkpoint(
                JobCheckpoints(
                    stage_b=StageBCheckpoint(
                        content=draft.content, usage=draft.usage, model=draft.model, messages=draft.messages
                    )
                )
            )
        result.usage += draft.usage
        result.models["stage_b"] = draft.model

        report = await self._entailment(result, await self._gate(result, draft.content, config, context), context)
        for _ in range(self.settings.repair_attempts):
            if report.passed:
                break
            log.info("gates failed; repairing", extra={"failures": [g.name for g in report.failures]})
            async with stage(result, "repair"):
                draft = await self.stage_b.repair(prompt_b, draft, report.failures, earned, lengths)
                report = run_gates(draft.content, config, context)
            result.usage += draft.usage
            result.repaired = True
            report = await self._entailment(result, report, context)
        if report.passed or self.settings.post_on_gate_failure or not fallback:
            self._record(result, report, Outcome.success, context)
            return
        log.info(
            "gates refused the repaired draft; answering with the extractive reply",
            extra={"failures": [g.name for g in report.failures]},
        )
        result.refused_gates = report.failures
        await self._quoted(result, evidence, link_context.evidence, link_context, themes, mode=FALLBACK_MODE)

    async def _entailment(self, result: ComposeResult, report: GateReport, context: GateContext) -> GateReport:
        """On a sampled job with a judge model, a grounded draft's sentences are checked for entailment; one judged
        contradicted fails grounded. A judge that fails is skipped: it never costs the job its reply."""
        grounded = next((g for g in report.results if g.name == "grounded"), None)
        if (
            self.judge is None
            or report.reply is None
            or grounded is None
            or not grounded.passed
            or not sampled(result.job_id or result.url, self.settings.judge_sample_rate)
        ):
            return report
        sentences = reply_sentences(report.reply.tldr) + reply_sentences(report.reply.summary)
        try:
            async with stage(result, "entailment") as span:
                verdicts, usage = await self.judge.judge(sentences, context.evidence)
                contradicted = [v for v in verdicts if v.label == "contradicted"]
                span.set_attributes(
                    {
                        "judge_model": self.judge.model,
                        "sentences": len(verdicts),
                        "contradicted": len(contradicted),
                        "verdicts": json.dumps([{"sentence": v.sentence, "label": v.label} for v in verdicts]),
                    }
                )
        except (LLMUnavailable, openai.OpenAIError) as exc:
            log.warning("the entailment judge failed; skipped", extra={"error": str(exc)[:300]})
            return report
        result.usage += usage
        if contradicted:
            listed = "; ".join(f'"{v.sentence[:90]}" (evidence: "{v.evidence[:120]}")' for v in contradicted[:4])
            failed = GateResult(
                name="grounded",
                passed=False,
                detail="a judge model finds these sentences contradicted by their evidence; say what the evidence "
                "says: " + listed,
            )
            report.results = [failed if g.name == "grounded" else g for g in report.results]
        return report

    def _record(self, result: ComposeResult, report: GateReport, passed: Outcome, context: GateContext) -> None:
        """The gated reply and its outcome, with its measures read off the evidence its final gates used."""
        result.reply = report.reply
        result.text = report.text
        result.gates = report.results
        result.outcome = passed if report.passed else Outcome.gate_failed
        if report.reply is not None:
            min_support = self.gate_config.content.min_support
            result.quality = reply_quality(report.reply, report.results, context.evidence, self.projects, min_support)
