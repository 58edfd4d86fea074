"""The layout gates: the reply as Slack will show it, three sections of the right lengths in Slack mrkdwn.

Sentences are counted by technoshare_common.text, the splitter the content gates and the extractive ranking use.
"""

import re
from typing import TYPE_CHECKING

from technoshare_common.schemas import GateResult
from technoshare_common.slack_format import (
    NO_PROJECT_LINE,
    SECTION_SEPARATOR,
    SECTION_TITLES,
    THEME_PREFIX,
    split_notes,
)
from technoshare_common.text import count_sentences

if TYPE_CHECKING:
    from composer.quality.gates import GateConfig

LAYOUT_GATES = ("tldr_sentence_count", "summary_sentence_count", "projects_theme_prefix", "slack_formatting")

_MARKDOWN_NOT_SLACK = (
    (re.compile(r"\*\*[^*]+\*\*"), "uses **bold** (Slack bold is *single asterisks*)"),
    (re.compile(r"^#{1,6}\s", re.M), "uses a Markdown heading (#), which Slack does not render"),
    (re.compile(r"\[[^\]]+\]\(https?://[^)]+\)"), "uses a Markdown link [text](url); Slack wants <url|text>"),
)


def _sections(text: str) -> list[tuple[str, str]]:
    sections = []
    for block in text.split(SECTION_SEPARATOR):
        title, _, body = block.partition("\n")
        sections.append((title, body))
    return sections


def check_text(text: str, config: "GateConfig") -> list[GateResult]:
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
