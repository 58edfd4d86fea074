"""The suite's scorers, for mlflow.genai.evaluate.

Hard scorers are the pipeline's own quality gates (composer.gates), so offline and live quality are the
same checks; an example passes when all of them pass. Soft scorers measure what gates cannot: whether the
summary's sentences are grounded in the evidence, whether the reply relates the link to the expected
project theme, and, when a judge model is configured, an LLM's verdict.
"""

import json
import re
from typing import Any

import openai
from mlflow.entities import Feedback
from mlflow.genai.scorers import Scorer, scorer

from composer.gates import GATE_NAMES, GateConfig, check_text, parse_reply
from composer.llm import parse_json_object
from technoshare_common.context import PERSONA_HEADER, STAGE_HEADER
from technoshare_common.text import split_sentences

HARD_SCORERS = GATE_NAMES
GROUNDED_SHARE = 0.6  # of a sentence's content words found in the evidence

_WORD = re.compile(r"[a-z0-9][a-z0-9+#-]{3,}")
_STOPWORDS = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "also",
        "among",
        "another",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "could",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "either",
        "every",
        "from",
        "further",
        "have",
        "having",
        "here",
        "into",
        "itself",
        "just",
        "like",
        "made",
        "make",
        "many",
        "more",
        "most",
        "much",
        "must",
        "only",
        "other",
        "over",
        "same",
        "should",
        "since",
        "some",
        "such",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "under",
        "until",
        "upon",
        "very",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "within",
        "without",
        "would",
        "your",
        "paper",
        "article",
        "link",
        "post",
        "project",
        "projects",
        "team",
    ]
)


def content_words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS}


def hard_scorers(config: GateConfig) -> list[Scorer]:
    def gate(name: str) -> Scorer:
        def check(outputs: dict[str, Any]) -> Feedback:
            reply = outputs.get("reply")
            if reply is None:
                why = outputs.get("error") or next(
                    (g["detail"] for g in outputs.get("gates", []) if g["name"] == "schema_validity"), "no reply"
                )
                return Feedback(value=False, rationale=f"no valid reply: {why}"[:500])
            parsed, problem = parse_reply(json.dumps(reply), config)
            if parsed is None:
                return Feedback(value=False, rationale=problem)
            if name == "schema_validity":
                return Feedback(value=True, rationale="valid reply JSON with known themes")
            [result] = [r for r in check_text(outputs.get("text") or "", config) if r.name == name]
            return Feedback(value=result.passed, rationale=result.detail)

        return scorer(check, name=name)

    return [gate(name) for name in HARD_SCORERS]


@scorer(name="grounding")
def grounding(outputs: dict[str, Any], expectations: dict[str, Any]) -> Feedback:
    """Share of summary sentences whose content words are mostly found in the evidence."""
    reply = outputs.get("reply")
    if not reply or not reply.get("summary"):
        return Feedback(value=0.0, rationale="no summary to ground")
    evidence = content_words(expectations.get("evidence_text", ""))
    sentences = [s for item in reply["summary"] for s in split_sentences(item)]
    ungrounded = []
    for sentence in sentences:
        words = content_words(sentence)
        if not words or len(words & evidence) / len(words) < GROUNDED_SHARE:
            ungrounded.append(sentence)
    share = 1 - len(ungrounded) / len(sentences)
    rationale = f"{len(sentences) - len(ungrounded)} of {len(sentences)} summary sentences grounded in the evidence"
    if ungrounded:
        rationale += "; not grounded: " + " | ".join(s[:120] for s in ungrounded[:2])
    return Feedback(value=round(share, 4), rationale=rationale)


@scorer(name="relevance")
def relevance(outputs: dict[str, Any], expectations: dict[str, Any]) -> Feedback:
    """1 when the reply leads with the expected project theme, 0.5 when it names it later, else 0."""
    reply = outputs.get("reply")
    themes = [project["theme"] for project in (reply or {}).get("projects", [])]
    expected = expectations["expected_theme"]
    value = 1.0 if themes[:1] == [expected] else 0.5 if expected in themes else 0.0
    return Feedback(value=value, rationale=f"expected {expected!r}; the reply names {themes}")


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


def soft_scorers(judge: Scorer | None = None) -> list[Scorer]:
    return [grounding, relevance, *([judge] if judge else [])]
