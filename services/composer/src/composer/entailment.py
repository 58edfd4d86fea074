"""An entailment check of abstractive sentences by a judge model, on a sampled share of jobs.

The agreement rules (composer.quality.agreement) catch flipped polarity, numbers and comparatives for free; a model
judges what rules cannot ("LoRA replaces the pre-trained weights" against "freezes the pre-trained weights"). Each
TL;DR and summary sentence goes to the judge with its best evidence passage, all in one call; a sentence judged
`contradicted` fails the grounded gate, so the repair, and then the extractive fallback, answer instead.

Off unless JUDGE_MODEL is set. JUDGE_SAMPLE_RATE bounds the cost: a job is sampled by a hash of its id, so a
retried job is judged again or not at all. Calls go through llm-gateway as persona `entailment_judge`, which has
a budget of its own there. The verdicts land on the job's trace (span `quality_gates.entailment`).
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from composer.llm import LLMClient, parse_json_object
from composer.output_schemas import response_format
from composer.quality.evidence import EvidenceIndex
from technoshare_common.schemas import TokenUsage

PERSONA = "entailment_judge"
ONLINE_PERSONA = "eval_judge"  # the same judge scoring posted replies afterwards (composer.quality.live), billed apart
LABELS = ("entailed", "neutral", "contradicted")
EVIDENCE_CHARS = 600  # of each sentence's best evidence passage

SYSTEM = (
    "You check a summary against its source. For each numbered claim you get the source passage it is based on. "
    "Answer `entailed` when the passage says it, `contradicted` when the passage says otherwise (a negation, "
    "another number, the opposite direction), and `neutral` when the passage does not say either way."
)


@dataclass(frozen=True)
class Verdict:
    sentence: str
    evidence: str
    label: str


def verdict_schema(count: int) -> dict[str, Any]:
    item = {
        "type": "object",
        "properties": {
            "claim": {"type": "integer", "enum": list(range(1, count + 1))},
            "label": {"type": "string", "enum": list(LABELS)},
        },
        "required": ["claim", "label"],
        "additionalProperties": False,
    }
    verdicts = {"type": "array", "items": item, "minItems": count, "maxItems": count}
    return {
        "type": "object",
        "properties": {"verdicts": verdicts},
        "required": ["verdicts"],
        "additionalProperties": False,
    }


def sampled(job_key: str, rate: float) -> bool:
    """Whether a job is judged: the same answer for every attempt of the job."""
    if rate <= 0:
        return False
    bucket = int.from_bytes(hashlib.sha256(job_key.encode()).digest()[:4], "big") / 2**32
    return bucket < rate


class EntailmentJudge:
    def __init__(self, llm: LLMClient, model: str, max_tokens: int = 400, persona: str = PERSONA) -> None:
        self.llm = llm
        self.model = model
        self.max_tokens = max_tokens
        self.persona = persona

    async def judge(self, sentences: list[str], index: EvidenceIndex) -> tuple[list[Verdict], TokenUsage]:
        """A verdict per sentence; an answer that cannot be read leaves the sentences `neutral` (never refused on
        a judge's malfunction)."""
        passages = [index.support(s).best_evidence[:EVIDENCE_CHARS] for s in sentences]
        claims = "\n\n".join(
            f"{number}. Claim: {sentence}\n   Passage: {passage}"
            for number, (sentence, passage) in enumerate(zip(sentences, passages, strict=True), 1)
        )
        result = await self.llm.chat(
            persona=self.persona,
            model=self.model,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": claims}],
            parameters={"temperature": 0, "max_tokens": self.max_tokens},
            response_format=response_format("entailment_verdicts", verdict_schema(len(sentences))),
        )
        labels = dict.fromkeys(range(1, len(sentences) + 1), "neutral")
        try:
            for item in parse_json_object(result.content).get("verdicts", []):
                if isinstance(item, dict) and item.get("label") in LABELS and item.get("claim") in labels:
                    labels[item["claim"]] = item["label"]
        except (ValueError, ValidationError, json.JSONDecodeError, AttributeError):
            pass
        verdicts = [
            Verdict(sentence, passage, labels[number])
            for number, (sentence, passage) in enumerate(zip(sentences, passages, strict=True), 1)
        ]
        return verdicts, result.usage
