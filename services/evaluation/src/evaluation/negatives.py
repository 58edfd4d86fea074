"""The recorded replies of data/eval_replies.json through the pipeline's gates.

The examples show how often the model's replies pass; these show that the gates still refuse what they exist to
refuse. A bad reply the gates accept is a gate disabled or loosened too far, which a pass rate alone would read as
an improvement, so the run fails on it as it does on a regression.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from composer.extractive import gates_for_source
from composer.quality.content import GateContext
from composer.quality.gates import GATE_NAMES, GateConfig, run_gates
from evaluation.dataset import DatasetError


class RecordedReply(BaseModel):
    example_id: str = Field(description="The dataset example whose evidence the reply is judged against.")
    label: Literal["good", "bad"]
    fails: list[str] = Field(default_factory=list, description="The gates a bad reply must fail (at least these).")
    reply: dict[str, Any] = Field(description="The reply as Stage B answers it: tldr, summary, projects.")
    note: str = ""


class RecordedReplies(BaseModel):
    description: str = ""
    entries: list[RecordedReply] = Field(min_length=1)


def load_recorded_replies(path: Path, example_ids: set[str]) -> list[RecordedReply]:
    try:
        entries = RecordedReplies.model_validate_json(path.read_text(encoding="utf-8")).entries
    except OSError as exc:
        raise DatasetError(f"cannot read the recorded replies {path}: {exc}") from exc
    except ValidationError as exc:
        raise DatasetError(f"{path} is not a valid file of recorded replies:\n{exc}") from exc
    problems = []
    for number, entry in enumerate(entries):
        if entry.example_id not in example_ids:
            problems.append(f"entry {number}: unknown example {entry.example_id!r}")
        if unknown := sorted(set(entry.fails) - set(GATE_NAMES)):
            problems.append(f"entry {number}: unknown gates {unknown}")
        if entry.label == "good" and entry.fails:
            problems.append(f"entry {number}: a good reply lists gates it fails {entry.fails}")
    if problems:
        raise DatasetError(f"{path}: " + "; ".join(problems))
    return entries


@dataclass(frozen=True)
class ReplyVerdict:
    example_id: str
    label: str
    expected: tuple[str, ...]  # the gates the entry says it fails
    failed: tuple[str, ...]  # the gates that refused it
    note: str

    @property
    def missed(self) -> tuple[str, ...]:
        """The gates that should have refused it and did not."""
        return tuple(name for name in self.expected if name not in self.failed)

    @property
    def refused(self) -> bool:
        return bool(self.failed) and not self.missed


@dataclass(frozen=True)
class NegativesReport:
    verdicts: tuple[ReplyVerdict, ...]

    @property
    def bad(self) -> list[ReplyVerdict]:
        return [v for v in self.verdicts if v.label == "bad"]

    @property
    def good(self) -> list[ReplyVerdict]:
        return [v for v in self.verdicts if v.label == "good"]

    @property
    def accepted(self) -> list[ReplyVerdict]:
        """Bad replies not refused by every gate they name: each one fails the run."""
        return [v for v in self.bad if not v.refused]

    @property
    def refused_count(self) -> int:
        return len(self.bad) - len(self.accepted)

    @property
    def all_refused(self) -> bool:
        return not self.accepted

    def metrics(self) -> dict[str, float]:
        good_passed = sum(not v.failed for v in self.good)
        return {
            "negatives_refused": self.refused_count / len(self.bad) if self.bad else 1.0,
            "negatives_total": float(len(self.bad)),
            "negatives_accepted": float(len(self.accepted)),
            "positives_accepted": good_passed / len(self.good) if self.good else 1.0,
        }

    def document(self) -> dict[str, Any]:
        return {
            **self.metrics(),
            "accepted_bad_replies": [
                {"example_id": v.example_id, "should_fail": v.expected, "failed": v.failed, "note": v.note}
                for v in self.accepted
            ],
            "refused_good_replies": [
                {"example_id": v.example_id, "failed": v.failed, "note": v.note} for v in self.good if v.failed
            ],
        }


def check_recorded_replies(
    replies: list[RecordedReply], config: GateConfig, contexts: Mapping[str, GateContext]
) -> NegativesReport:
    """Every recorded reply through run_gates, as composer gates Stage B's answer on that example's evidence."""
    verdicts = []
    for entry in replies:
        context = contexts[entry.example_id]
        report = run_gates(json.dumps(entry.reply), gates_for_source(config, context.evidence), context)
        failed = tuple(result.name for result in report.failures)
        verdicts.append(ReplyVerdict(entry.example_id, entry.label, tuple(entry.fails), failed, entry.note))
    return NegativesReport(tuple(verdicts))
