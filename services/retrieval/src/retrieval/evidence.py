"""Turns extracted text into Evidence: truncation, coverage and snippets, the same for every adapter."""

import re

from retrieval.settings import RetrievalSettings
from technoshare_common.schemas import Coverage, Evidence, Snippet, Source

# Below this many characters, extracted text is too thin to call the page fully read.
FULL_TEXT_MIN_CHARS = 400

_MARKDOWN_NOISE = (
    (re.compile(r"<!--.*?-->", re.S), " "),
    (re.compile(r"```.*?```", re.S), " "),  # code blocks say little a reader summarises
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), " "),  # images and badges
    (re.compile(r"\[!\[[^\]]*\]\([^)]*\)\]\([^)]*\)"), " "),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links keep their label
    (re.compile(r"<[^>\n]+>"), " "),  # inline HTML tags
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),  # heading markers
    (re.compile(r"^\s*[-*+]\s+", re.M), "- "),
    (re.compile(r"[*_`]{1,3}"), ""),
    (re.compile(r"[ \t]+"), " "),
    (re.compile(r"\n{3,}"), "\n\n"),
)


def markdown_to_text(markdown: str) -> str:
    text = markdown
    for pattern, replacement in _MARKDOWN_NOISE:
        text = pattern.sub(replacement, text)
    return text.strip()


def make_snippets(text: str, source_url: str, size: int, limit: int) -> list[Snippet]:
    """Paragraph-aligned windows of at most `size` characters, in reading order."""
    snippets: list[Snippet] = []
    current = ""
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if len(paragraph) < 40:  # headings, badges, stray lines
            continue
        while paragraph:
            piece, paragraph = paragraph[:size], paragraph[size:]
            if current and len(current) + len(piece) + 1 > size:
                snippets.append(Snippet(text=current, source_url=source_url))
                current = ""
            current = f"{current}\n{piece}" if current else piece
            if len(snippets) >= limit:
                return snippets
    if current and len(snippets) < limit:
        snippets.append(Snippet(text=current, source_url=source_url))
    return snippets


def build_evidence(
    settings: RetrievalSettings,
    *,
    url: str,
    final_url: str,
    adapter_name: str,
    title: str,
    text: str,
    sources: list[Source],
    authors: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    partial_by_nature: bool = False,
) -> Evidence:
    """`partial_by_nature` marks content that is only part of the work (an abstract, not the paper)."""
    text = text.strip()
    truncated = len(text) > settings.max_evidence_chars
    if truncated:
        text = text[: settings.max_evidence_chars].rsplit(" ", 1)[0]
    if not text:
        coverage = Coverage.metadata_only
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
        snippets=make_snippets(text, final_url, settings.snippet_chars, settings.max_snippets),
        sources=sources,
        metadata=metadata or {},
        truncated=truncated,
    )
