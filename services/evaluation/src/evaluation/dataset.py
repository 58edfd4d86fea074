"""data/eval_dataset.json: each example pins its inputs (link, Slack text, evidence snapshot) and what a good
reply leads with, so a prompt or model change is judged on the same inputs every time."""

import hashlib
import json
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from technoshare_common.schemas import Evidence

ANY_THEME = "(any earned theme)"  # a regression case no person gave a theme: relevance is earned_relevance's alone


class Split(StrEnum):
    dev = "dev"  # what the prompts and the gates' thresholds were tuned on
    holdout = "holdout"  # sources nothing was tuned on: read only by the evaluation report
    regression = "regression"  # replies voted on in Slack (evaluation.regressions): a candidate must not fail one


class EvalExample(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Also the prefix of the example's MLflow metrics.")
    url: str
    slack_text: str
    expected_theme: str | None = Field(
        description="The team's project theme a good reply relates the link to; null where no project relates, and "
        "a good reply says so."
    )
    tags: list[str] = Field(default_factory=list)
    split: Split = Split.dev
    source: dict[str, str | None] = Field(default_factory=dict)
    evidence: Evidence

    @property
    def kind(self) -> str:
        """arxiv, github or web: what the per-kind pass rates group by (the example id's prefix)."""
        return self.id.split("-", 1)[0]


class EvalDataset(BaseModel):
    description: str = ""
    examples: list[EvalExample] = Field(min_length=1)

    def fingerprint(self) -> str:
        """Changes whenever an input changes, so runs on different inputs are never compared as equals."""
        payload = json.dumps([example.model_dump(mode="json") for example in self.examples], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


class DatasetError(ValueError):
    pass


def load_dataset(path: Path, themes: set[str] | None = None) -> EvalDataset:
    try:
        dataset = EvalDataset.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"cannot read the evaluation dataset {path}: {exc}") from exc
    except ValidationError as exc:
        raise DatasetError(f"{path} is not a valid evaluation dataset:\n{exc}") from exc
    ids = [example.id for example in dataset.examples]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(f"{path}: duplicate example ids {duplicates}")
    if themes is not None:
        unknown = sorted({e.expected_theme for e in dataset.examples if e.expected_theme} - themes)
        if unknown:
            raise DatasetError(f"{path}: expected themes {unknown} are not project themes {sorted(themes)}")
    return dataset
