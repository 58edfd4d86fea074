"""Sentences and prose, cut one way everywhere: retrieval's snippets, the layout gates' sentence counts, the
content gates' evidence index and the extractive ranking all split text here, so the thresholds calibrated on
these sentences (composer.quality.thresholds) hold for every text they judge.

A paragraph is cut at its plain sentence ends (one stop after a word that is no abbreviation, before a capital),
where pysbd would cut too; pysbd decides only the pieces left with a stop that could be an abbreviation, an
initial or an ellipsis (it costs about a millisecond a sentence). Blank lines, list items, headings, quotes and
table rows of the Markdown and web pages the evidence comes from are hard breaks.
"""

import html
import re
from collections.abc import Iterator
from typing import NamedTuple

import pysbd
from pysbd.lang.english import English

MIN_SENTENCE_WORDS = 3  # an evidence "sentence" with fewer prose words is a heading, a badge or a menu item

_SEGMENTER = pysbd.Segmenter(language="en", clean=False)
_ABBREVIATIONS = frozenset(a.strip().lower() for a in English.Abbreviation.ABBREVIATIONS)

# --- markup ------------------------------------------------------------------------------------

_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK_TARGET = re.compile(r"\]\([^)\s]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)\S+")
_PROSE_WORD = re.compile(r"[^\W\d_]{2,}")
_MARKUP_HINT = re.compile(r"[<&]|\]\(|https?:|www\.")


def strip_markup(text: str) -> str:
    """The prose of a text: HTML tags and entities, Markdown link targets and URLs removed (link texts kept)."""
    if not _MARKUP_HINT.search(text):
        return text
    text = _MD_IMAGE.sub(r" \1 ", text)
    text = _MD_LINK_TARGET.sub("]", text)
    text = _HTML_TAG.sub(" ", text)
    text = _URL.sub(" ", text)
    return html.unescape(text)


def prose_words(text: str) -> int:
    return len(_PROSE_WORD.findall(strip_markup(text)))


# --- sentences ---------------------------------------------------------------------------------

_LIST_ITEM = re.compile(r"^(?:[-*+•◦▪‣]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"^#{1,6}\s+")
_QUOTE = re.compile(r"^>+\s?")
_TABLE_ROW = re.compile(r"^\|")
_CLOSERS = "\"'\u201d\u2019)\\]"  # closing quotes and brackets after a full stop
_OPENERS = "\"'\u201c\u2018([*_"  # opening quotes, brackets and emphasis before a word
_ENDS_SENTENCE = re.compile(rf"[.!?:;][{_CLOSERS}*_]*$")
_BOUNDARY = re.compile(rf"([.!?])[{_CLOSERS}]*(\s+)(?=\S)")
_EMBEDDED = re.compile(r"<(style|script)\b[^>]*>.*?</\1\s*>", re.I | re.S)  # CSS and scripts in a page
_BULLET = re.compile(r"^[-*+•]\s+")
WRAPPED_LINE_CHARS = 30  # a shorter line without a full stop is a heading, not the start of a wrapped sentence


def _continues(previous: str, line: str) -> bool:
    """Whether a line continues the previous one's sentence (a README wrapped at 80 columns) rather than
    starting a paragraph of its own (a web page's one-line paragraphs, a heading, a title)."""
    if _ENDS_SENTENCE.search(previous):
        last = previous.rsplit(" ", 1)[-1].rstrip(".").lstrip("(")
        if "." not in last and last.lower() not in _ABBREVIATIONS:  # "(e.g." and "etc." do not end a sentence
            return False
    if line[0].islower():
        return True
    last_word = previous.rsplit(" ", 1)[-1]
    return len(previous) >= WRAPPED_LINE_CHARS and (last_word[:1].islower() or last_word.endswith(","))


def _blocks(text: str) -> Iterator[tuple[str, bool]]:
    """Paragraphs, each with whether it is a list item: blank lines, list items, headings, quotes and table rows
    break; a wrapped line joins the next."""
    current: list[str] = []
    standalone = False  # the current block is a heading or a table row: nothing joins it
    listed = False  # the current block is a list item
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if current:
                yield " ".join(current), listed
            current, standalone, listed = [], False, False
            continue
        starts_block = bool(
            _LIST_ITEM.match(line) or _HEADING.match(line) or _QUOTE.match(line) or _TABLE_ROW.match(line)
        )
        if current and (starts_block or standalone or not _continues(current[-1], line)):
            yield " ".join(current), listed
            current = []
        if not current:
            standalone = bool(_HEADING.match(line) or _TABLE_ROW.match(line))
            listed = bool(_LIST_ITEM.match(line) or _TABLE_ROW.match(line))
            for marker in (_LIST_ITEM, _HEADING, _QUOTE):
                line = marker.sub("", line, count=1)
        current.append(line)
    if current:
        yield " ".join(current), listed


def _boundary_kind(block: str, match: re.Match[str]) -> str:
    """What a stop followed by a space is: "none" before a lowercase letter (e.g. such, i.e. the); "plain" where
    pysbd would split too, one stop after a word that is no abbreviation (or after a link or a code span);
    "ambiguous" otherwise (M. Amdahl, etc. The)."""
    following = block[match.end() :].lstrip(_OPENERS)
    if not following or following[0].islower():
        return "none"
    start = block.rfind(" ", 0, match.start(1)) + 1
    word = block[start : match.start(1)].strip(_OPENERS)
    quoted = ("](" in word and word.endswith(")")) or word.endswith("`")  # [text](url). or `code`.
    if not quoted and (len(word) < 2 or "." in word or word.lower() in _ABBREVIATIONS):
        return "ambiguous"
    if block[match.start(1) - 1] in ".!?":
        return "ambiguous"
    return "plain"


def _split_block(block: str) -> list[str]:
    """Sentences of one paragraph. It is cut at its plain sentence ends (one stop after a word that is no
    abbreviation, before a capital), where pysbd would cut too; pysbd decides only the pieces left with a stop
    that could be an abbreviation, an initial or an ellipsis (it costs about a millisecond a sentence, and the
    gates run per job)."""
    pieces: list[tuple[str, bool]] = []  # (text, has an ambiguous stop)
    start, ambiguous = 0, False
    for match in _BOUNDARY.finditer(block):
        kind = _boundary_kind(block, match)
        if kind == "plain":
            pieces.append((block[start : match.start(2)], ambiguous))
            start, ambiguous = match.end(), False
        elif kind == "ambiguous":
            ambiguous = True
    pieces.append((block[start:], ambiguous))
    sentences = []
    for piece, ambiguous in pieces:
        if ambiguous:
            # The processor's sentences, without Segmenter.segment's character spans: those compile a regex per
            # sentence, most of pysbd's time, and the whitespace they keep is collapsed here anyway.
            sentences += _SEGMENTER.processor(piece).process()
        else:
            sentences.append(piece)
    return [s.strip() for s in sentences if s.strip()]


def split_sentences(text: str) -> list[str]:
    """The sentences of a text, whitespace collapsed; paragraphs and list items always break."""
    return [" ".join(s.split()) for block, _ in _blocks(text) for s in _split_block(block)]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


MAX_FRAGMENT_WORDS = 8  # a line this short without a full stop is a heading, a menu entry or a list item
MAX_GROUPED_FRAGMENTS = 8


def _is_fragment(sentence: str) -> bool:
    return not _ENDS_SENTENCE.search(sentence.rstrip("*_`")) and prose_words(sentence) <= MAX_FRAGMENT_WORDS


class EvidenceSentence(NamedTuple):
    text: str
    listed: bool  # a list item or an enumeration of fragments: quotable only with the list it belongs to


def evidence_sentences(text: str) -> list[EvidenceSentence]:
    """The sentences of an evidence text, whitespace collapsed, in reading order.

    Paragraphs, list items and headings always break. Consecutive fragments (headings, menu entries and list
    items too short to be sentences, such as "Documentation", "CLI reference", "REST API reference") are joined
    into one enumeration with semicolons, at most eight at a time, since a reply that lists them fuses them; what
    still has fewer than three prose words (a lone heading, a badge, markup) is dropped.
    """
    out: list[EvidenceSentence] = []
    fragments: list[str] = []

    def keep(sentence: str, listed: bool) -> None:
        if prose_words(sentence) >= MIN_SENTENCE_WORDS:
            out.append(EvidenceSentence(sentence, listed))

    def flush() -> None:
        if fragments:
            keep("; ".join(fragments), True)
            fragments.clear()

    for block, listed in _blocks(_EMBEDDED.sub(" ", text)):
        for sentence in _split_block(block):
            sentence = _BULLET.sub("", " ".join(sentence.split()))
            if not prose_words(sentence):
                continue
            if _is_fragment(sentence):
                fragments.append(sentence.rstrip(":;, "))
                if len(fragments) == MAX_GROUPED_FRAGMENTS:
                    flush()
                continue
            flush()
            keep(sentence, listed)
    flush()
    return out
