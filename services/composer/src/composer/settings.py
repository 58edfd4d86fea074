from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from composer.quality import thresholds
from technoshare_common.schemas import NoticeDelivery
from technoshare_common.settings import REPO_DATA_DIR, ServiceSettings

# The content gates (composer/quality/content.py), named here so that settings need not import their libraries.
CONTENT_GATES = (
    "grounded",
    "no_repetition",
    "no_markup",
    "language",
    "no_padding",
    "standalone",
    "earned_relevance",
    "project_grounded",
)

# REPLY_LANGUAGE: the languages the language gate knows, each with the Unicode scripts its letters are written in
# (the first word of a letter's Unicode name: LATIN SMALL LETTER A, CJK UNIFIED IDEOGRAPH-5E73, HIRAGANA LETTER A).
_LATIN = ("LATIN",)
LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("en", "de", "fr", "es", "it", "pt", "nl", "sv", "da", "no", "pl", "cs", "ro", "tr"), _LATIN),
    **dict.fromkeys(("ru", "uk"), ("CYRILLIC",)),
    "el": ("GREEK",),
    "zh": ("CJK",),
    "ja": ("CJK", "HIRAGANA", "KATAKANA"),
    "ko": ("HANGUL", "CJK"),
}


class ComposeMode(StrEnum):
    abstractive = "abstractive"
    extractive = "extractive"
    auto = "auto"


class LLMUnavailableReply(StrEnum):
    degraded = "degraded"
    retry = "retry"


class ComposerSettings(ServiceSettings):
    data_dir: Path = Field(REPO_DATA_DIR, validation_alias="TECHNOSHARE_DATA_DIR")
    stage_a_model: str = Field("gpt-4o-mini", validation_alias="STAGE_A_MODEL")
    stage_b_model: str = Field("gpt-4o-mini", validation_alias="STAGE_B_MODEL")
    stage_a_tools: bool = Field(
        True,
        validation_alias="STAGE_A_TOOLS",
        description="Offer Stage A the search tool (needs a tool-calling model).",
    )
    max_tool_calls: int = Field(2, ge=0, le=5, validation_alias="STAGE_A_MAX_TOOL_CALLS")
    evidence_window_chars: int = Field(6000, gt=200, validation_alias="EVIDENCE_WINDOW_CHARS")
    tldr_sentences: int = Field(3, ge=1, validation_alias="GATE_TLDR_SENTENCES")
    summary_min_sentences: int = Field(10, ge=1, validation_alias="GATE_SUMMARY_MIN_SENTENCES")
    summary_max_sentences: int = Field(15, ge=1, validation_alias="GATE_SUMMARY_MAX_SENTENCES")
    repair_attempts: int = Field(1, ge=0, le=3, validation_alias="GATE_REPAIR_ATTEMPTS")
    post_on_gate_failure: bool = Field(False, validation_alias="POST_ON_GATE_FAILURE")
    content_gates: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(CONTENT_GATES),
        validation_alias="CONTENT_GATES",
        description="The content gates to run (comma-separated, empty for none): "
        + ", ".join(CONTENT_GATES)
        + " (composer/quality/content.py). A gate not listed is neither run nor reported.",
    )
    gate_min_support: float = Field(
        thresholds.MIN_SUPPORT,
        ge=0,
        le=1,
        validation_alias="GATE_MIN_SUPPORT",
        description="grounded: the share of a TL;DR or summary sentence's content words that its best-matching "
        "one or two evidence sentences must contain (calibrated on data/eval_replies.json).",
    )
    gate_max_similarity: float = Field(
        thresholds.MAX_SIMILARITY,
        gt=0,
        le=1,
        validation_alias="GATE_MAX_SIMILARITY",
        description="no_repetition and no_padding: two sentences of the reply this similar (rapidfuzz, 0 to 1) "
        "are the same sentence said twice.",
    )
    reply_language: str = Field(
        "en",
        validation_alias="REPLY_LANGUAGE",
        description="language: the ISO 639-1 code the reply must be written in ("
        + ", ".join(sorted(LANGUAGE_SCRIPTS))
        + "); every letter must also be in that language's script (Latin for en).",
    )
    gate_min_theme_strength: float = Field(
        thresholds.MIN_THEME_STRENGTH,
        ge=0,
        le=1,
        validation_alias="GATE_MIN_THEME_STRENGTH",
        description="earned_relevance: the least evidence-to-project strength (composer.quality.themes) "
        "for a project line's theme; Stage B is offered only the themes that reach it.",
    )
    job_deadline_seconds: float = Field(540.0, gt=0, validation_alias="JOB_DEADLINE_SECONDS")
    llm_timeout_seconds: float = Field(240.0, gt=0, validation_alias="LLM_TIMEOUT_SECONDS")

    judge_model: str = Field(
        "",
        validation_alias="JUDGE_MODEL",
        description="A model that checks abstractive sentences for entailment by their best evidence passage "
        "(composer/entailment.py); a sentence judged contradicted fails grounded. Empty: no judge.",
    )
    judge_sample_rate: float = Field(
        0.2,
        ge=0,
        le=1,
        validation_alias="JUDGE_SAMPLE_RATE",
        description="The share of jobs whose abstractive draft the judge checks (by a hash of the job id, so a "
        "retried job is judged the same way).",
    )

    online_judge_sample_rate: float = Field(
        0.1,
        ge=0,
        le=1,
        validation_alias="ONLINE_JUDGE_SAMPLE_RATE",
        description="With JUDGE_MODEL set, the share of posted replies the judge also scores afterwards, off the "
        "reply's path: its verdicts land on the trace as LLM_JUDGE assessments (judge_entailment, "
        "judge_contradicted), billed as llm-gateway persona eval_judge.",
    )

    compose_mode: ComposeMode = Field(
        ComposeMode.auto,
        validation_alias="COMPOSE_MODE",
        description="abstractive: the model writes the reply from Stage A's facts; extractive: the reply quotes "
        "the source's own sentences and the model only picks the TL;DR (composer/extractive.py); auto: extractive "
        "for the models in COMPOSE_EXTRACTIVE_MODELS, abstractive for the others.",
    )
    compose_extractive_models: Annotated[list[str], NoDecode] = Field(
        ["smollm2-135m-instruct"],
        validation_alias="COMPOSE_EXTRACTIVE_MODELS",
        description="Stage B models too small to write facts: COMPOSE_MODE=auto composes extractively for them "
        "(comma-separated).",
    )
    extractive_candidates: int = Field(
        8,
        ge=2,
        le=30,
        validation_alias="EXTRACTIVE_CANDIDATES",
        description="How many top-ranked source sentences the extractive mode shows the model to pick the TL;DR from.",
    )
    llm_unavailable_reply: LLMUnavailableReply = Field(
        LLMUnavailableReply.degraded,
        validation_alias="LLM_UNAVAILABLE_REPLY",
        description="When the LLM is unavailable (breaker open, timeouts after the gateway's retries, budget "
        "spent): degraded posts the extractive reply made without the model, labelled, with outcome `degraded`; "
        "retry leaves the job to ingest's next attempt.",
    )
    unreadable_link_reply: NoticeDelivery = Field(
        NoticeDelivery.reply,
        validation_alias="UNREADABLE_LINK_REPLY",
        description="What a dead, blocked or unsupported link gets: reply (a short thread reply saying why), "
        "reaction (an emoji on the shared message) or none. The outcome is `unreadable` either way.",
    )
    unreadable_link_reaction: str = Field(
        "warning",
        pattern=r"^[a-z0-9_+-]{1,64}$",
        validation_alias="UNREADABLE_LINK_REACTION",
        description="The emoji name (without colons) used when UNREADABLE_LINK_REPLY=reaction.",
    )

    prompt_alias: str = Field(
        "prod", validation_alias="PROMPT_ALIAS", description="Registry alias the pipeline loads: prompts:/NAME@ALIAS."
    )
    prompt_cache_ttl_seconds: float = Field(60.0, gt=0, validation_alias="PROMPT_CACHE_TTL_SECONDS")
    mlflow_enable_tracking: bool = Field(True, validation_alias="MLFLOW_ENABLE_TRACKING")

    @field_validator("content_gates", mode="before")
    @classmethod
    def _known_gates(cls, value: object) -> object:
        names = [n.strip() for n in value.split(",")] if isinstance(value, str) else value
        if isinstance(names, (list, tuple, set, frozenset)):
            names = frozenset(n for n in names if n)
            unknown = sorted(names - set(CONTENT_GATES))
            if unknown:
                raise ValueError(f"unknown content gate(s) {unknown}; the content gates are {', '.join(CONTENT_GATES)}")
        return names

    @field_validator("reply_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGE_SCRIPTS:
            raise ValueError(f"unsupported reply language {value!r}; supported: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
        return value

    @field_validator("compose_extractive_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    def resolved_compose_mode(self) -> ComposeMode:
        """auto becomes extractive for the small models listed, so a weak model never writes the facts."""
        if self.compose_mode != ComposeMode.auto:
            return self.compose_mode
        if self.stage_b_model in self.compose_extractive_models:
            return ComposeMode.extractive
        return ComposeMode.abstractive

    @property
    def prompts_dir(self) -> Path:
        return self.data_dir / "prompts"

    @property
    def projects_file(self) -> Path:
        return self.data_dir / "projects.yaml"
