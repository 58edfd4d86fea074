"""The reply's Slack layout, produced by code so that no model has to get it right.

composer's formatting gate judges exactly this text, and poster posts it, so both use this module.
A reply's notes follow its three sections, after one more separator, as italic lines; the gates
judge the sections only (`split_notes`).
"""

import re
from typing import Any

from technoshare_common.schemas import ComposedReply, Coverage

SECTION_TITLES = ("*TL;DR*", "*Summary*", "*Projects*")
SECTION_SEPARATOR = "\n\n\n"  # two blank lines between sections
THEME_PREFIX = "Theme: "
# The Projects section when the evidence earns no project: said plainly rather than relating the link to a guess.
NO_PROJECT_LINE = "No clear link to the team's projects."
SLACK_SECTION_LIMIT = 3000  # characters per Block Kit section text
_NOTE_LINE = re.compile(r"_(.+)_")


def escape(text: str) -> str:
    """Text as Slack mrkdwn shows it literally: `&`, `<` and `>` escaped, so no sentence (a model's, a quote of a
    page, a note) can become a mention (`<!channel>`, `<@U…>`) or a link. The reply's own formatting is added
    around the escaped text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sentence(text: str) -> str:
    return escape(" ".join(text.split()))


def project_line(theme: str, relevance: str) -> str:
    return f"{THEME_PREFIX}{_sentence(theme)} — {_sentence(relevance)}"


def render_sections(reply: ComposedReply) -> list[tuple[str, str]]:
    projects = "\n".join(project_line(p.theme, p.relevance) for p in reply.projects) or NO_PROJECT_LINE
    return [
        (SECTION_TITLES[0], " ".join(_sentence(s) for s in reply.tldr)),
        (SECTION_TITLES[1], " ".join(_sentence(s) for s in reply.summary)),
        (SECTION_TITLES[2], projects),
    ]


def note_lines(reply: ComposedReply) -> list[str]:
    return [f"_{_sentence(note)}_" for note in reply.notes]


def render_text(reply: ComposedReply) -> str:
    """The mrkdwn message: three titled sections separated by two blank lines, then the notes, if any."""
    parts = [f"{title}\n{body}" for title, body in render_sections(reply)]
    if reply.notes:
        parts.append("\n".join(note_lines(reply)))
    return SECTION_SEPARATOR.join(parts)


def split_notes(text: str) -> tuple[str, list[str]]:
    """(the sections, the notes) of a rendered reply: the notes are a last part made only of italic lines."""
    sections, separator, last = text.rpartition(SECTION_SEPARATOR)
    matches = [_NOTE_LINE.fullmatch(line) for line in last.split("\n")]
    if not separator or not all(matches):
        return text, []
    return sections, [match.group(1) for match in matches if match]


def _chunks(text: str, limit: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(candidate) > limit and current:
            chunks.append(current)
            current = word
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def render_blocks(reply: ComposedReply, source_url: str, coverage: Coverage | None = None) -> list[dict[str, Any]]:
    """Block Kit rendering of the same sections, split to respect Slack's per-block limit."""
    blocks: list[dict[str, Any]] = []
    for title, body in render_sections(reply):
        first = True
        for chunk in _chunks(body, SLACK_SECTION_LIMIT - len(title) - 1):
            text = f"{title}\n{chunk}" if first else chunk
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
            first = False
    source = source_line(source_url)
    if coverage is not None and coverage != Coverage.full:
        source += f" · coverage: {coverage.value.replace('_', ' ')}"
    blocks.append(context_block([*note_lines(reply), source]))
    return blocks


def source_line(url: str) -> str:
    """The link as Slack link syntax, with the characters that would end or relabel it escaped."""
    return f"Source: <{url.replace('<', '%3C').replace('>', '%3E').replace('|', '%7C')}>"


def context_block(lines: list[str]) -> dict[str, Any]:
    """Slack's small grey print under a message, one line each."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(lines)}]}
