"""The suite's scorers, for mlflow.genai.evaluate.

Hard scorers are the pipeline's own quality gates (composer.quality.gates.check_reply: the layout gates, then the
content gates), so offline and live quality are the same checks, plus `relevance`; an example passes when all of
them pass. Soft scorers measure what a pass or fail cannot: how well the TL;DR and summary sentences are supported by
the evidence (the grounded gate's own measure, averaged), and, when a judge model is configured, an LLM's verdict.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import openai
from mlflow.entities import Feedback
from mlflow.genai.scorers import Scorer, scorer

from composer.extractive import gates_for_source
from composer.llm import parse_json_object
from composer.projects import Project
from composer.quality.content import CONTENT_GATES, GateContext, reply_sentences
from composer.quality.evidence import EvidenceIndex
from composer.quality.gates import GATE_NAMES, GateConfig, check_reply, parse_reply
from evaluation.dataset import ANY_THEME, EvalExample
from technoshare_common.context import PERSONA_HEADER, STAGE_HEADER
from technoshare_common.schemas import ComposedReply, GateResult
from technoshare_common.slack_format import render_text

HARD_SCORERS = (*GATE_NAMES, "relevance")
# The gates the suite had before the content gates: their pass rate is reported too, so the change shows.
STRUCTURAL_GATES = tuple(name for name in GATE_NAMES if name not in CONTENT_GATES)


def gate_contexts(examples: Iterable[EvalExample], projects: list[Project]) -> dict[str, GateContext]:
    """Per example id, what its content gates judge a reply against: the pinned evidence, indexed once."""
    return {example.id: GateContext(EvidenceIndex.from_evidence(example.evidence), projects) for example in examples}


def gate_results(outputs: Mapping[str, Any], config: GateConfig, context: GateContext) -> dict[str, GateResult]:
    """Every gate's result on one composed reply, by name; without a valid reply every gate fails with why."""
    reply = outputs.get("reply")
    if reply is None:
        why = outputs.get("error") or next(
            (g["detail"] for g in outputs.get("gates", []) if g["name"] == "schema_validity"), "no reply"
        )
        return _all_failed(config, f"no valid reply: {why}"[:500])
    config = gates_for_source(config, context.evidence)
    parsed, problem = parse_reply(json.dumps(reply), config)
    if parsed is None:
        return _all_failed(config, problem)
    schema = GateResult(name="schema_validity", passed=True, detail="valid reply JSON with known themes")
    results = check_reply(parsed, outputs.get("text") or render_text(parsed), config, context)
    return {result.name: result for result in [schema, *results]}


def _all_failed(config: GateConfig, why: str) -> dict[str, GateResult]:
    return {name: GateResult(name=name, passed=False, detail=why) for name in config.gate_names}


def hard_scorers(config: GateConfig, contexts: Mapping[str, GateContext]) -> list[Scorer]:
    """One scorer per gate the configuration runs, then relevance."""
    checked: dict[str, dict[str, GateResult]] = {}  # the gates run once per example and reply, not once per scorer

    def results(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, GateResult]:
        key = json.dumps([inputs["example_id"], outputs], sort_keys=True, default=str)
        if key not in checked:
            checked[key] = gate_results(outputs, config, contexts[inputs["example_id"]])
        return checked[key]

    def gate(name: str) -> Scorer:
        def check(inputs: dict[str, Any], outputs: dict[str, Any]) -> Feedback:
            result = results(inputs, outputs)[name]
            return Feedback(value=result.passed, rationale=result.detail)

        return scorer(check, name=name)

    return [*(gate(name) for name in config.gate_names), relevance]


NO_PROJECT = "(no project)"  # the expectation of an example no project relates to


@scorer(name="relevance")
def relevance(outputs: dict[str, Any], expectations: dict[str, Any]) -> Feedback:
    """Passes when the expected project theme is among the reply's project lines, in any position.

    The dataset names one theme per link, but a link can fairly concern two projects, and earned_relevance
    already orders the lines by what the evidence supports; requiring the expected theme first would fail
    replies that are right by the gate's own ranking. Absent, the reply relates the link to the wrong work.
    """
    reply = outputs.get("reply")
    themes = [project["theme"] for project in (reply or {}).get("projects", [])]
    expected = expectations["expected_theme"]
    if expected == ANY_THEME:  # a regression case no person gave a theme: the earned_relevance gate judges it
        return Feedback(value=reply is not None, rationale="no theme given; earned_relevance judges the themes")
    if expected in (None, NO_PROJECT):  # no project relates: the reply must say so rather than guess
        if reply is not None and not themes:
            return Feedback(value=True, rationale="no project relates, and the reply says so")
        return Feedback(value=False, rationale=f"no project relates to this link; the reply names {themes}")
    if expected not in themes:
        return Feedback(value=False, rationale=f"expected {expected!r} among the project lines; they name {themes}")
    place = themes.index(expected) + 1
    return Feedback(value=True, rationale=f"{expected!r} is project line {place} of {len(themes)}: {themes}")


@dataclass(frozen=True)
class SentenceSupport:
    sentence: str
    score: float
    best_evidence: str


def sentence_supports(reply: Mapping[str, Any] | None, index: EvidenceIndex) -> list[SentenceSupport]:
    """Each TL;DR and summary sentence with its support in the evidence, as the grounded gate measures it."""
    if not reply:
        return []
    parsed = ComposedReply.model_validate(reply)
    sentences = reply_sentences(parsed.tldr) + reply_sentences(parsed.summary)
    supports = ((sentence, index.support(sentence)) for sentence in sentences)
    return [SentenceSupport(sentence, support.score, support.best_evidence) for sentence, support in supports]


def grounding_scorer(config: GateConfig, contexts: Mapping[str, GateContext]) -> Scorer:
    """The mean support of the TL;DR and summary sentences (0 without a reply): the soft measure behind the
    grounded gate, which fails a reply as soon as one sentence is under its threshold."""

    def grounding(inputs: dict[str, Any], outputs: dict[str, Any]) -> Feedback:
        supports = sentence_supports(outputs.get("reply"), contexts[inputs["example_id"]].evidence)
        if not supports:
            return Feedback(value=0.0, rationale="no TL;DR or summary to ground")
        weak = [s for s in supports if s.score < config.content.min_support]
        rationale = f"{len(supports) - len(weak)} of {len(supports)} sentences supported by the evidence"
        if weak:
            rationale += "; unsupported: " + " | ".join(f"{s.sentence[:120]} ({s.score:.2f})" for s in weak[:3])
        return Feedback(value=round(sum(s.score for s in supports) / len(supports), 4), rationale=rationale)

    return scorer(grounding, name="grounding")


JUDGE_PROMPT = """You review a Slack reply that summarises a shared link for an engineering team.
Evidence (what the link says):
{evidence}

Reply:
{reply}

Rate from 1 (poor) to 5 (excellent) how faithful the reply is to the evidence and how useful it is to the
team. Answer with JSON only: {{"score": <1-5>, "reason": "<one sentence>"}}"""


def llm_judge(gateway_url: str, api_key: str, model: str, evidence_chars: int = 4000) -> Scorer:
    """An LLM judge through llm-gateway (persona `eval_judge`), so its tokens and cost are accounted too."""
    client = openai.OpenAI(base_url=f"{gateway_url.rstrip('/')}/v1", api_key=api_key, max_retries=1, timeout=120)

    def judge(outputs: dict[str, Any], expectations: dict[str, Any]) -> Feedback:
        if not outputs.get("text"):
            return Feedback(value=0.0, rationale="no reply to judge")
        prompt = JUDGE_PROMPT.format(
            evidence=expectations.get("evidence_text", "")[:evidence_chars], reply=outputs["text"]
        )
        completion = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=200,
            response_format={"type": "json_object"},
            extra_headers={PERSONA_HEADER: "eval_judge", STAGE_HEADER: "eval_judge"},
        )
        try:
            verdict = parse_json_object(completion.choices[0].message.content or "")
            score = min(max(float(verdict["score"]), 1.0), 5.0)
        except (ValueError, KeyError, TypeError) as exc:
            return Feedback(value=0.0, rationale=f"the judge's answer was unusable: {exc}"[:300])
        return Feedback(value=round((score - 1) / 4, 4), rationale=str(verdict.get("reason", ""))[:500])

    return scorer(judge, name="llm_judge")


def soft_scorers(config: GateConfig, contexts: Mapping[str, GateContext], judge: Scorer | None = None) -> list[Scorer]:
    return [grounding_scorer(config, contexts), *([judge] if judge else [])]
