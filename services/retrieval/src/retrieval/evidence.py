"""Turns extracted sections into Evidence: truncation, coverage and snippets, the same for every adapter.

Adapters hand over sections (a heading and its prose paragraphs) in reading order, already free of code, tables,
badges, markup and math, because the composer may quote a snippet's sentences as they stand.
"""

import html
import re
from dataclasses import dataclass

from retrieval.settings import RetrievalSettings
from technoshare_common.schemas import Coverage, Evidence, Snippet, Source
from technoshare_common.text import split_sentences

# Below this many characters, extracted text is too thin to call the page fully read.
FULL_TEXT_MIN_CHARS = 400


@dataclass(frozen=True)
class Section:
    """A heading ("" before the first one) and the prose paragraphs under it."""

    heading: str
    paragraphs: tuple[str, ...]


def without_lead_in(paragraph: str) -> str:
    """The paragraph before a dropped code block or table, less the sentence that introduced it ("Run it with:")."""
    if not paragraph.endswith(":"):
        return paragraph
    return " ".join(split_sentences(paragraph)[:-1])


def is_prose(paragraph: str) -> bool:
    """Long enough to be prose, or a short sentence ("Start building with open models."), not a stray label."""
    words = re.findall(r"[^\W\d_]{2,}", paragraph)
    if len(paragraph.split()) < 3:  # a label, a bare link
        return False
    return (len(paragraph) >= 40 and len(words) >= 4) or (len(words) >= 3 and paragraph.endswith((".", "!")))


def tidy(text: str) -> str:
    """One line of text: collapsed white space, no space before punctuation or inside brackets."""
    text = " ".join(text.split())
    text = re.sub(r"\s+([.,;:!?)\]])", r"\1", text)
    return re.sub(r"([(\[])\s+", r"\1", text)


# --- Markdown (READMEs, text/markdown pages) ---------------------------------------------------

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_THEMATIC_BREAK = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)+\|?\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+")
_REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S+")
_HTML_HEADING = re.compile(r"<h([1-6])\b[^>]*>(.*?)</h\1\s*>", re.S | re.I)
_ALERT = re.compile(r"^\[!(NOTE|TIP|IMPORTANT|WARNING|CAUTION)\]\s*$", re.I)

_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)|!\[[^\]]*\]\[[^\]]*\]")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)|\[([^\]]+)\]\[[^\]]*\]")
_LEADING_LINK = re.compile(r"^\s*\[[^\]]+\]\([^)]*\)\s*(?:[-\u2013\u2014:|]|$)")
_INLINE_NOISE = (
    (re.compile(r"<pre\b.*?</pre\s*>", re.S | re.I), " "),  # code, in HTML
    (_IMAGE, " "),  # images and badges (a linked badge leaves an empty link, removed next)
    (_LINK, r"\1\2"),  # links keep their label
    (re.compile(r"<(?:https?|mailto):[^>]*>"), " "),  # autolinks
    (re.compile(r"<[^>]*>"), " "),  # inline HTML tags
    (re.compile(r"`+([^`]*)`+"), r"\1"),  # inline code keeps its text: it is part of the sentence
    (re.compile(r"(?<![\w*])(\*{1,3}|_{1,3})(?=\S)(.+?)(?<=\S)\1(?![\w*])"), r"\2"),  # emphasis, not snake_case
    (re.compile(r"(?<!\w):[a-z0-9_+\-]+:(?!\w)"), " "),  # emoji shortcodes
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|])"), r"\1"),  # backslash escapes
)


def markdown_inline(text: str) -> str:
    """One paragraph of Markdown as plain prose: link labels kept; images, badges, HTML and emphasis gone."""
    for pattern, replacement in _INLINE_NOISE:
        text = pattern.sub(replacement, text)
    return tidy(html.unescape(text))


def _links_only(raw: str) -> bool:
    """A link bar or an index of links ("[Docs](..) | [Blog](..)", "- [Name](url) - what it is")."""
    rest = _LINK.sub("", _IMAGE.sub("", raw))
    return bool(_LEADING_LINK.match(raw)) or not re.search(r"[^\W_]", re.sub(r"<[^>]*>", "", rest))


def markdown_sections(markdown: str) -> list[Section]:
    """A Markdown document's sections in reading order: code blocks, tables, HTML images and badges, link
    lists and reference definitions are dropped; list items and quotes become paragraphs of their own."""
    blocks: list[tuple[str, str]] = []  # ("heading" | "paragraph" | "lead-in" | "item", raw Markdown)
    lines: list[str] = []
    kind = "paragraph"
    fence = ""
    table = False

    def flush() -> None:
        nonlocal lines, kind, table
        if lines and not table:
            blocks.append((kind, "\n".join(lines)))
        lines, kind, table = [], "paragraph", False

    def introduced() -> None:
        """The paragraph just before a dropped code block or table: its last sentence introduced what was dropped."""
        if blocks and blocks[-1][0] == "paragraph":
            blocks[-1] = ("lead-in", blocks[-1][1])

    for line in re.sub(r"<!--.*?-->", " ", markdown, flags=re.S).splitlines():
        stripped = line.strip()
        if fence:
            fence = "" if stripped.startswith(fence) else fence
            continue
        if match := _FENCE.match(line):
            flush()
            introduced()
            fence = match.group(1)
            continue
        if not stripped:
            flush()
            continue
        if match := _ATX_HEADING.match(line):
            flush()
            blocks.append(("heading", match.group(2)))
            continue
        if _TABLE_DELIMITER.match(line) or stripped.startswith("|"):
            if not table:
                if _TABLE_DELIMITER.match(line) and lines:
                    lines.pop()  # the header row, written without pipes at its ends
                flush()
                introduced()
                table = True
            continue
        if _SETEXT_UNDERLINE.match(line) and lines and kind == "paragraph":
            blocks.append(("heading", " ".join(lines)))
            lines = []
            continue
        if _THEMATIC_BREAK.match(line):
            flush()
            continue
        if _REFERENCE_DEFINITION.match(line):
            continue
        if _LIST_ITEM.match(line):
            flush()
            kind = "item"
            lines.append(_LIST_ITEM.sub("", line, count=1))
            continue
        if line.startswith(("    ", "\t")) and not lines and (not blocks or blocks[-1][0] != "item"):
            continue  # an indented code block
        if stripped.startswith(">"):
            stripped = re.sub(r"^(?:>\s?)+", "", stripped)
            if _ALERT.match(stripped) or not stripped:
                continue
        lines.append(stripped)
    flush()

    clean: list[tuple[str, str]] = []
    for kind, raw in blocks:
        if kind == "paragraph" and (match := _HTML_HEADING.search(raw)):
            clean.append(("heading", markdown_inline(match.group(2))))
        elif kind == "heading":
            clean.append(("heading", markdown_inline(raw)))
        elif not _links_only(raw):
            text = markdown_inline(raw)
            if kind == "item":  # still marked: a list item quoted alone is a fragment (technoshare_common.text)
                text = f"- {text}"
            clean.append(("paragraph", without_lead_in(text) if kind == "lead-in" else text))
    return group_sections(clean)


def group_sections(blocks: list[tuple[str, str]]) -> list[Section]:
    """("heading" | "paragraph", text) blocks in reading order, as sections."""
    sections: list[Section] = []
    heading = ""
    paragraphs: list[str] = []
    for kind, text in blocks:
        if kind == "heading":
            if heading or paragraphs:
                sections.append(Section(heading, tuple(paragraphs)))
            heading, paragraphs = text, []
        elif text:
            paragraphs.append(text)
    if heading or paragraphs:
        sections.append(Section(heading, tuple(paragraphs)))
    return sections


# --- Evidence ----------------------------------------------------------------------------------


def _fit(sections: list[Section], budget: int) -> tuple[list[Section], bool]:
    """The prose that fits in `budget` characters of text, cut between paragraphs (between sentences only when
    not even the first paragraph fits); and whether anything was cut."""
    kept: list[Section] = []
    used = 0
    for section in sections:
        taken: list[str] = []
        for paragraph in section.paragraphs:
            cost = len(paragraph) + 2 + (len(section.heading) + 2 if not taken and section.heading else 0)
            if used + cost > budget:
                if not kept and not taken:
                    taken = _leading_sentences(paragraph, budget - cost + len(paragraph))
                if taken:
                    kept.append(Section(section.heading, tuple(taken)))
                return kept, True
            taken.append(paragraph)
            used += cost
        if taken:
            kept.append(Section(section.heading, tuple(taken)))
    return kept, False


def _leading_sentences(paragraph: str, room: int) -> list[str]:
    text = ""
    for sentence in split_sentences(paragraph):
        if len(text) + len(sentence) + 1 > room:
            break
        text = f"{text} {sentence}".strip()
    return [text or paragraph[:room].rsplit(" ", 1)[0]] if room > 0 else []


def _pieces(paragraphs: tuple[str, ...], size: int) -> list[str]:
    """Paragraphs of at most `size` characters; a longer one split between sentences (between words only for a
    sentence longer than `size`)."""
    pieces: list[str] = []
    for paragraph in paragraphs:
        if len(paragraph) <= size:
            pieces.append(paragraph)
            continue
        current = ""
        for sentence in split_sentences(paragraph):
            while len(sentence) > size:
                cut = sentence[:size].rsplit(" ", 1)[0]
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(cut)
                sentence = sentence[len(cut) :].strip()
            if current and len(current) + 1 + len(sentence) > size:
                pieces.append(current)
                current = ""
            current = f"{current} {sentence}".strip()
        if current:
            pieces.append(current)
    return pieces


def make_snippets(sections: list[Section], source_url: str, size: int, limit: int) -> list[Snippet]:
    """Windows of at most `size` characters in reading order, each within one section and carrying its heading."""
    snippets: list[Snippet] = []
    for section in sections:
        current = ""
        for piece in _pieces(section.paragraphs, size):
            if current and len(current) + 1 + len(piece) > size:
                snippets.append(Snippet(text=current, source_url=source_url, heading=section.heading))
                current = ""
                if len(snippets) >= limit:
                    return snippets
            current = f"{current}\n{piece}" if current else piece
        if current:
            snippets.append(Snippet(text=current, source_url=source_url, heading=section.heading))
            if len(snippets) >= limit:
                return snippets
    return snippets


def build_evidence(
    settings: RetrievalSettings,
    *,
    url: str,
    final_url: str,
    adapter_name: str,
    title: str,
    sections: list[Section],
    sources: list[Source],
    authors: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    partial_by_nature: bool = False,
    read_whole: bool = False,
) -> Evidence:
    """`partial_by_nature` marks content that is only part of the work (an abstract, not the paper);
    `read_whole` the whole work read (a paper's full text), `full` even when the size cap then cut it."""
    prose = [Section(s.heading, tuple(p for p in s.paragraphs if is_prose(p))) for s in sections]
    kept, truncated = _fit([s for s in prose if s.paragraphs], settings.max_evidence_chars)
    text = "\n\n".join("\n\n".join(([s.heading] if s.heading else []) + list(s.paragraphs)) for s in kept)
    if not text:
        coverage = Coverage.metadata_only
    elif read_whole:
        coverage = Coverage.full
    elif truncated or partial_by_nature or len(text) < FULL_TEXT_MIN_CHARS:
        coverage = Coverage.partial
    else:
        coverage = Coverage.full
    return Evidence(
        url=url,
        final_url=final_url,
        adapter_name=adapter_name,
        coverage=coverage,
        title=title.strip(),
        authors=authors or [],
        text=text,
        snippets=make_snippets(kept, final_url, settings.snippet_chars, settings.max_snippets),
        sources=sources,
        metadata=metadata or {},
        truncated=truncated,
    )
