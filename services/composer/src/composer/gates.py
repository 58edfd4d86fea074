"""Quality gates: the reply is judged as Slack will show it, and each check says what to fix.

The names are the evaluation suite's hard scorers, so offline and live quality are the same checks: the layout
gates here, then the content gates (composer.content_gates), which judge what the reply says against the evidence.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from composer.content_gates import CONTENT_GATES, ContentGateConfig, GateContext, check_content
from composer.llm import parse_json_object
from composer.settings import ComposerSettings
from technoshare_common.schemas import ComposedReply, GateResult
from technoshare_common.slack_format import (
    NO_PROJECT_LINE,
    SECTION_SEPARATOR,
    SECTION_TITLES,
    THEME_PREFIX,
    render_text,
    split_notes,
)
from technoshare_common.text import count_sentences

GATE_NAMES = (
    "schema_validity",
    "tldr_sentence_count",
    "summary_sentence_count",
    "projects_theme_prefix",
    "slack_formatting",
    *CONTENT_GATES,
)

_MARKDOWN_NOT_SLACK = (
    (re.compile(r"\*\*[^*]+\*\*"), "uses **bold** (Slack bold is *single asterisks*)"),
    (re.compile(r"^#{1,6}\s", re.M), "uses a Markdown heading (#), which Slack does not render"),
    (re.compile(r"\[[^\]]+\]\(https?://[^)]+\)"), "uses a Markdown link [text](url); Slack wants <url|text>"),
)


@dataclass(frozen=True)
class GateConfig:
    tldr_sentences: int
    summary_min: int
    summary_max: int
    themes: tuple[str, ...]
    content: ContentGateConfig = field(default_factory=ContentGateConfig)

    @classmethod
    def from_settings(cls, settings: ComposerSettings, themes: Iterable[str]) -> "GateConfig":
        """The gates the pipeline runs, and the evaluation suite's hard scorers with them."""
        return cls(
            tldr_sentences=settings.tldr_sentences,
            summary_min=settings.summary_min_sentences,
            summary_max=settings.summary_max_sentences,
            themes=tuple(sorted(set(themes))),
            content=ContentGateConfig.from_settings(settings),
        )

    @property
    def gate_names(self) -> tuple[str, ...]:
        """The gates this configuration reports: the layout gates and the enabled content gates, in order."""
        return tuple(n for n in GATE_NAMES if n not in CONTENT_GATES or n in self.content.enabled)


@dataclass
class GateReport:
    reply: ComposedReply | None
    text: str | None
    results: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]


def parse_reply(content: str, config: GateConfig) -> tuple[ComposedReply | None, str]:
    try:
        reply = ComposedReply.model_validate(parse_json_object(content))
    except (ValueError, ValidationError) as exc:
        return None, f"the answer is not valid JSON for the reply schema: {str(exc)[:400]}"
    empty = [name for name in ("tldr", "summary") if not getattr(reply, name)]
    if empty:
        return None, f"empty sections: {', '.join(empty)}"
    # Notes are code's to add (e.g. why a reply is quoted); a model's would be ungated text under the reply.
    reply = reply.model_copy(update={"notes": []})
    unknown = sorted({p.theme for p in reply.projects} - set(config.themes))
    if unknown:
        return None, f"unknown project themes {unknown}; use one of {list(config.themes)}"
    return reply, ""


def _sections(text: str) -> list[tuple[str, str]]:
    sections = []
    for block in text.split(SECTION_SEPARATOR):
        title, _, body = block.partition("\n")
        sections.append((title, body))
    return sections


def check_text(text: str, config: GateConfig) -> list[GateResult]:
    """The four layout and length gates, on the mrkdwn text exactly as it would be posted (notes aside)."""
    ordered = _sections(split_notes(text)[0])
    sections = dict(ordered)
    tldr = sections.get(SECTION_TITLES[0], "")
    summary = sections.get(SECTION_TITLES[1], "")
    projects = sections.get(SECTION_TITLES[2], "")

    tldr_count = count_sentences(tldr)
    summary_count = count_sentences(summary)
    project_lines = [line for line in projects.splitlines() if line.strip()]
    unprefixed = [line for line in project_lines if not line.startswith(THEME_PREFIX)]

    layout_problems = []
    titles = [title for title, _ in ordered]
    if titles != list(SECTION_TITLES):
        layout_problems.append(f"sections must be {list(SECTION_TITLES)} in that order, got {titles}")
    if "\n\n\n\n" in text:
        layout_problems.append("more than two blank lines between sections")
    layout_problems += [why for pattern, why in _MARKDOWN_NOT_SLACK if pattern.search(text)]

    return [
        GateResult(
            name="tldr_sentence_count",
            passed=tldr_count == config.tldr_sentences,
            detail=f"TL;DR has {tldr_count} sentences; it must have exactly {config.tldr_sentences}",
        ),
        GateResult(
            name="summary_sentence_count",
            passed=config.summary_min <= summary_count <= config.summary_max,
            detail=f"summary has {summary_count} sentences; it must have {config.summary_min} to {config.summary_max}",
        ),
        GateResult(
            name="projects_theme_prefix",
            passed=project_lines == [NO_PROJECT_LINE] or (bool(project_lines) and not unprefixed),
            detail=f"every project line must start with '{THEME_PREFIX}'"
            + (f"; these do not: {unprefixed[:3]}" if unprefixed else "")
            + ("" if project_lines else "; there are no project lines"),
        ),
        GateResult(
            name="slack_formatting",
            passed=not layout_problems,
            detail="; ".join(layout_problems) or "three sections separated by two blank lines, Slack mrkdwn only",
        ),
    ]


def check_reply(reply: ComposedReply, text: str, config: GateConfig, context: GateContext) -> list[GateResult]:
    """Every gate after schema_validity, in GATE_NAMES order: the layout gates on the rendered text, then the
    enabled content gates on the reply (the evaluation suite's scorers call this on a recorded reply)."""
    return [*check_text(text, config), *check_content(reply, context, config.content)]


def run_gates(content: str, config: GateConfig, context: GateContext) -> GateReport:
    reply, problem = parse_reply(content, config)
    if reply is None:
        not_checked = [
            GateResult(name=n, passed=False, detail="not checked: no valid reply") for n in config.gate_names[1:]
        ]
        return GateReport(None, None, [GateResult(name="schema_validity", passed=False, detail=problem), *not_checked])
    text = render_text(reply)
    schema = GateResult(name="schema_validity", passed=True, detail="valid reply JSON with known themes")
    return GateReport(reply, text, [schema, *check_reply(reply, text, config, context)])
