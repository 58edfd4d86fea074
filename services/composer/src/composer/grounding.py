"""Grounding: which evidence sentences support a sentence of the reply, and which projects the evidence is about.

Deterministic text statistics, no model. The measure that decides whether a sentence is grounded is local: the
share of the sentence's content terms found in its best-matching evidence sentence, or in the best two evidence
sentences together, wherever they are (a reply sentence often fuses two, the title and a sentence of the abstract
for one). It is never measured against the evidence as a whole: a long README shares common words with any
sentence at all, which is why the old lexical scorer gave 1.0 to an invented reply. Numbers and proper names are
checked apart, against the whole evidence (URLs included), since one invented name can hide in a supported
sentence.

Terms are content-word stems (sumy's English stop words and stemmer, NLTK's Snowball, which needs no downloaded
data); sentences are split by pysbd, with blank lines, list items and headings of the Markdown and web pages the
evidence comes from as hard breaks.
"""

import html
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import combinations
from typing import Any

import pysbd
from pysbd.lang.english import English
from rapidfuzz import fuzz
from sumy.nlp.stemmers import Stemmer
from sumy.utils import get_stop_words

from composer.projects import Project
from technoshare_common.schemas import Evidence
from technoshare_common.text import split_sentences

# Words that describe the shared document or the team rather than say something about the subject.
DOMAIN_STOP_WORDS = frozenset(
    {
        "paper",
        "papers",
        "article",
        "post",
        "blog",
        "link",
        "links",
        "page",
        "document",
        "readme",
        "repo",
        "repository",
        "project",
        "projects",
        "team",
        "teams",
        "author",
        "authors",
    }
)
STOP_WORDS = frozenset(get_stop_words("english")) | DOMAIN_STOP_WORDS

MIN_SENTENCE_WORDS = 3  # an evidence "sentence" with fewer prose words is a heading, a badge or a menu item
MIN_TERM_CHARS = 3

_STEMMER = Stemmer("english")
_SEGMENTER = pysbd.Segmenter(language="en", clean=False)
_ABBREVIATIONS = frozenset(a.strip().lower() for a in English.Abbreviation.ABBREVIATIONS)

# --- markup and tokens -------------------------------------------------------------------------

_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK_TARGET = re.compile(r"\]\([^)\s]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)\S+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CONTRACTION = re.compile(r"n['\u2019]t\b|['\u2019](?:s|t|re|ve|ll|d|m)\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")
_ACRONYM_PLURAL = re.compile(r"\b([A-Z][A-Z0-9]+)s\b")  # LLMs, KVs, GPUs: the acronym's term
_BRITISH = re.compile(r"(?<=[a-z]{3})is(e|es|ed|ing|ation|ations|er|ers)$")
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


def normalize_numbers(text: str) -> str:
    """10,000 and 10000 are the same number."""
    return _THOUSANDS.sub("", text)


@lru_cache(maxsize=65536)
def _term(word: str) -> str | None:
    """A lowercased word's term: its stem, the word itself when it has digits, None for a stop word."""
    if not word.isalpha() and any(c.isdigit() for c in word):
        return word
    if len(word) < MIN_TERM_CHARS or word in STOP_WORDS:
        return None
    return _STEMMER(_BRITISH.sub(r"iz\1", word))  # quantised and quantized share a stem


def _term_words(text: str) -> Iterator[tuple[str, str]]:
    """(stem, surface word) for each content word of a text, in order."""
    text = _CONTRACTION.sub("", _ACRONYM_PLURAL.sub(r"\1", normalize_numbers(strip_markup(text))).lower())
    for word in _WORD.findall(text):
        stem = _term(word)
        if stem is not None:
            yield stem, word


_HYPHENATED = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)+")


def _compounds(text: str) -> frozenset[str]:
    """Hyphenated words also as one word: an evidence that says pre-trained supports a reply that says pretrained."""
    if "-" not in text:
        return frozenset()
    joined = ("".join(m.group().lower().split("-")) for m in _HYPHENATED.finditer(text))
    return frozenset(t for word in joined if (t := _term(word)))


def terms(text: str) -> set[str]:
    """Lowercased content-word stems: stop words (sumy's English list and a few domain words) and words under
    three characters dropped, tokens with digits kept whole."""
    return {stem for stem, _ in _term_words(text)}


# --- evidence sentences ------------------------------------------------------------------------

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


def _blocks(text: str) -> Iterator[str]:
    """Paragraphs: blank lines, list items, headings, quotes and table rows break; a wrapped line joins the next."""
    current: list[str] = []
    standalone = False  # the current block is a heading or a table row: nothing joins it
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if current:
                yield " ".join(current)
            current, standalone = [], False
            continue
        starts_block = bool(
            _LIST_ITEM.match(line) or _HEADING.match(line) or _QUOTE.match(line) or _TABLE_ROW.match(line)
        )
        if current and (starts_block or standalone or not _continues(current[-1], line)):
            yield " ".join(current)
            current = []
        if not current:
            standalone = bool(_HEADING.match(line) or _TABLE_ROW.match(line))
            for marker in (_LIST_ITEM, _HEADING, _QUOTE):
                line = marker.sub("", line, count=1)
        current.append(line)
    if current:
        yield " ".join(current)


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


def prose_words(text: str) -> int:
    return len(_PROSE_WORD.findall(strip_markup(text)))


MAX_FRAGMENT_WORDS = 8  # a line this short without a full stop is a heading, a menu entry or a list item
MAX_GROUPED_FRAGMENTS = 8


def _is_fragment(sentence: str) -> bool:
    return not _ENDS_SENTENCE.search(sentence.rstrip("*_`")) and prose_words(sentence) <= MAX_FRAGMENT_WORDS


def evidence_sentences(text: str) -> list[str]:
    """The sentences of an evidence text, whitespace collapsed, in reading order.

    Paragraphs, list items and headings always break. Consecutive fragments (headings, menu entries and list
    items too short to be sentences, such as "Documentation", "CLI reference", "REST API reference") are joined
    into one enumeration with semicolons, at most eight at a time, since a reply that lists them fuses them; what
    still has fewer than three prose words (a lone heading, a badge, markup) is dropped.
    """
    out: list[str] = []
    fragments: list[str] = []

    def keep(sentence: str) -> None:
        if prose_words(sentence) >= MIN_SENTENCE_WORDS:
            out.append(sentence)

    def flush() -> None:
        if fragments:
            keep("; ".join(fragments))
            fragments.clear()

    for block in _blocks(_EMBEDDED.sub(" ", text)):
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
            keep(sentence)
    flush()
    return out


# --- names and numbers -------------------------------------------------------------------------

_NAME_TOKEN = re.compile(r"[^\W_](?:[\w+]|[-./'\u2019](?=[^\W_]))*")
_NUMBER_SUFFIX = re.compile(r"^(\d+(?:\.\d+)?)[a-z]{1,2}$")
_MULTIPLIER = re.compile(r"^(\d+(?:\.\d+)?)x$")
_CAMEL = re.compile(r"[a-z][A-Z]|[A-Z]{2}")


def _is_name(token: str, first: bool) -> bool:
    """A number or a proper name: digits, an acronym, CamelCase, or a capitalised word not opening the sentence."""
    if any(c.isdigit() for c in token):
        return True
    if token.lower() in STOP_WORDS:  # README, The, I
        return False
    if _CAMEL.search(token):
        return True
    return len(token) >= 2 and token[0].isupper() and not first


_POSSESSIVE = re.compile(r"['\u2019]s\b")


def _vocabulary_words(text: str) -> set[str]:
    lowered = _POSSESSIVE.sub("", normalize_numbers(text).lower())
    tokens = set(_NAME_TOKEN.findall(lowered))
    numbers = {m.group(1) for t in tokens if t[0].isdigit() and (m := _NUMBER_SUFFIX.match(t))}
    return tokens | numbers | set(_WORD.findall(lowered))


def names(sentence: str) -> list[str]:
    """The sentence's numbers and proper names, in order (possessive 's dropped)."""
    found = []
    text = normalize_numbers(strip_markup(sentence))
    for position, match in enumerate(_NAME_TOKEN.finditer(text)):
        token = _POSSESSIVE.sub("", match.group())
        if _is_name(token, first=position == 0):
            found.append(token)
    return found


# --- reply sentences ---------------------------------------------------------------------------


def reply_sentences(items: Sequence[str]) -> list[str]:
    """The sentences of a reply section (an item that hides two sentences counts as two)."""
    return [s for item in items for s in split_sentences(" ".join(item.split()))]


def normalized_words(sentence: str) -> str:
    return " ".join(_WORD.findall(sentence.lower()))


def similarity(a: str, b: str) -> float:
    """0..1: rapidfuzz's edit-distance ratio on the words, or on the words sorted (a reordered repeat)."""
    return word_similarity(normalized_words(a), normalized_words(b))


def word_similarity(x: str, y: str) -> float:
    """similarity() of two normalized_words() strings."""
    if not x or not y:
        return 0.0
    return max(fuzz.ratio(x, y), fuzz.token_sort_ratio(x, y)) / 100


# --- the index ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Support:
    score: float  # share of the sentence's content terms found in best_evidence (1.0 for a sentence without any)
    best_evidence: str  # one evidence sentence, or two joined with " … "
    unsupported_terms: tuple[str, ...]  # the sentence's content words missing from best_evidence
    unknown_names: tuple[str, ...]  # numbers and names found nowhere in the evidence


class EvidenceIndex:
    """The evidence's sentences with their terms, for grounding reply sentences one at a time."""

    def __init__(
        self, sentences: Sequence[str], vocabulary_texts: Iterable[str] | None = None, title: str = ""
    ) -> None:
        """`vocabulary_texts`: where numbers and names may occur (the raw texts the sentences came from, URLs
        included); by default the sentences themselves."""
        self.sentences: list[str] = list(dict.fromkeys(sentences))
        self.title_terms = frozenset(terms(title))
        self._terms: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = {}
        self._surface_counts: Counter[tuple[str, str]] = Counter()  # (stem, word) -> occurrences
        self._surfaces: dict[str, str] | None = None
        self.term_counts: Counter[str] = Counter()  # in how many sentences each term occurs
        for position, sentence in enumerate(self.sentences):
            found: dict[str, str] = {}
            pairs = list(_term_words(sentence))
            self._surface_counts.update(pairs)
            for stem, word in pairs:
                found.setdefault(stem, word)
            sentence_terms = frozenset(found) | _compounds(sentence)
            self._terms.append(sentence_terms)
            for stem in sentence_terms:
                self._postings.setdefault(stem, []).append(position)
        self.term_counts.update({stem: len(ids) for stem, ids in self._postings.items()})
        self._vocabulary: set[str] = set()
        characters: set[str] = set()
        for text in self.sentences if vocabulary_texts is None else vocabulary_texts:
            self._vocabulary |= _vocabulary_words(text)
            characters.update(text)
        self.characters = frozenset(characters)  # every character of the evidence, for the script check
        self._normalized = " ".join(" ".join(self.sentences).lower().split())
        self._supports: dict[str, Support] = {}
        self._themes: dict[tuple[Project, ...], list[ThemeStrength]] = {}

    @classmethod
    def from_evidence(cls, evidence: Evidence, extra_texts: Iterable[str] = ()) -> "EvidenceIndex":
        """Title, authors, metadata values, the text or, without one, the snippets, and extra texts such as what
        Stage A's search tool read. With a text, the link's own snippets are left out: they are excerpts of it, cut
        at seams that make sentences of their own ("... is now Update Nov 2025 ..."); snippets read from other
        sources are kept."""
        extra = list(extra_texts)
        head = [evidence.title, ", ".join(evidence.authors), *evidence.metadata.values()]
        own = {evidence.url, evidence.final_url}
        bodies = [evidence.text] if evidence.text else []
        bodies += [s.text for s in evidence.snippets if not evidence.text or s.source_url not in own]
        sentences = []
        title = " ".join(evidence.title.split())
        if title and prose_words(title) >= 1:
            sentences.append(title)
        for text in [*head[1:], *bodies, *extra]:
            sentences += evidence_sentences(text)
        vocabulary = [*head, *bodies, *extra, evidence.url, evidence.final_url]
        return cls(sentences, vocabulary_texts=vocabulary, title=evidence.title)

    def surface(self, stem: str) -> str:
        """The evidence's most frequent word for a term (ties: the first seen)."""
        if self._surfaces is None:
            best: dict[str, tuple[int, str]] = {}
            for (term, word), count in self._surface_counts.items():  # in first-seen order
                if count > best.get(term, (0, ""))[0]:
                    best[term] = (count, word)
            self._surfaces = {term: word for term, (_, word) in best.items()}
        return self._surfaces.get(stem, stem)

    def contains_verbatim(self, sentence: str) -> bool:
        return " ".join(sentence.lower().split()) in self._normalized

    def known(self, name: str) -> bool:
        """Whether a number or a name occurs in the evidence (case-insensitive; a compound such as GPT-3-based or
        RoBERTa/DeBERTa is known when its name parts are)."""
        token = normalize_numbers(name).lower()
        multiplier = _MULTIPLIER.match(token)
        if token in self._vocabulary or (multiplier and multiplier.group(1) in self._vocabulary):
            return True
        parts = [p for p in re.split(r"[-./'\u2019]", name) if p]
        if len(parts) < 2:
            return False
        return all(self.known(p) for p in parts if _is_name(p, first=False))

    def unknown_names(self, sentence: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for name in names(sentence) if not self.known(name)))

    def support(self, sentence: str) -> Support:
        """How well the evidence supports one sentence (memoised: several gates ask about the same sentences)."""
        cached = self._supports.get(sentence)
        if cached is None:
            cached = self._supports[sentence] = self._support(sentence)
        return cached

    def _support(self, sentence: str) -> Support:
        words: dict[str, str] = {}  # stem -> its first surface word in the sentence
        for stem, word in _term_words(sentence):
            words.setdefault(stem, word)
        unknown = self.unknown_names(sentence)
        if not words:
            return Support(1.0, "", (), unknown)
        stems = list(words)
        masks: dict[int, int] = {}
        for bit, stem in enumerate(stems):
            for position in self._postings.get(stem, ()):
                masks[position] = masks.get(position, 0) | (1 << bit)
        best: tuple[int, ...] = ()
        best_mask = 0
        # The best single sentence, then the best pair; ties go to the single sentence and the earliest position.
        for position, mask in sorted(masks.items()):
            if mask.bit_count() > best_mask.bit_count():
                best, best_mask = (position,), mask
        full = (1 << len(stems)) - 1
        if best_mask != full:
            for (a, mask_a), (b, mask_b) in combinations(_maximal(masks), 2):
                if (mask_a | mask_b).bit_count() > best_mask.bit_count():
                    best, best_mask = (a, b), mask_a | mask_b
        missing = tuple(words[stem] for bit, stem in enumerate(stems) if not best_mask >> bit & 1)
        evidence = " … ".join(self.sentences[p] for p in best)
        return Support(round(best_mask.bit_count() / len(stems), 4), evidence, missing, unknown)


def _maximal(masks: dict[int, int]) -> list[tuple[int, int]]:
    """One sentence per distinct term mask, dropping masks contained in another: the only candidates for the
    best pair (few, since a reply sentence has at most a few dozen terms)."""
    first: dict[int, int] = {}
    for position, mask in sorted(masks.items()):
        first.setdefault(mask, position)
    distinct = sorted(first.items(), key=lambda item: (-item[0].bit_count(), item[1]))
    kept: list[tuple[int, int]] = []
    for mask, position in distinct:
        if not any(mask | other == other for _, other in kept):
            kept.append((position, mask))
    return sorted(kept)


# --- how the evidence relates to each project ------------------------------------------------


@dataclass(frozen=True)
class ThemeStrength:
    theme: str
    project: str
    score: float  # 0..1: the idf-weighted share of the project's terms the evidence carries, by salience
    shared: tuple[str, ...]  # the evidence's own words for those terms, most salient first


SALIENT_SENTENCES = 3  # a term counted in this many evidence sentences (or in the title) counts fully


@dataclass(frozen=True)
class _Described:
    terms: frozenset[str]  # the theme's and the description's terms
    key: frozenset[str]  # the theme's words and the names the description gives
    names: frozenset[str]  # the names the description gives (LoRA, Redis, JAX, PyTorch)


@lru_cache(maxsize=256)
def _describe(project: Project) -> _Described:
    """A project's terms, hyphenated words also as one word (fine-tuning, finetuning)."""
    text = f"{project.theme}. {project.description}"
    described = terms(text) | _compounds(text)
    named = {t for name in names(project.description) for t in terms(name)} & described
    return _Described(frozenset(described), frozenset((terms(project.theme) & described) | named), frozenset(named))


def theme_strengths(index: EvidenceIndex, projects: list[Project]) -> list[ThemeStrength]:
    """How strongly the evidence supports relating the link to each project, strongest first (ties by theme name,
    then project name; never by the order of the file or of the schema's enum).

    A project's score is the share of its description's terms (its theme's words included) that the evidence
    carries, each weighted by how distinctive it is among the projects (idf) and by its salience in the evidence:
    the number of evidence sentences it is counted in, up to SALIENT_SENTENCES (a term of the title counts fully).
    A key term (a theme word, or a name the description gives, such as LoRA or Redis) is counted in every sentence
    it occurs in; any other term only in a sentence that shares at least one more term with the project, so that
    generic words ("fast", "built", "code") scattered over a long page do not add up to a topic. A name the
    description gives that is fully salient counts twice: a page about Prometheus or Redis is about the project
    that names them. Normalised by the project's own total weight (capped at 1), so a long description is not
    favoured and scores compare across projects.
    """
    key = tuple(projects)
    if key not in index._themes:
        index._themes[key] = _theme_strengths(index, projects)
    return list(index._themes[key])


def _theme_strengths(index: EvidenceIndex, projects: list[Project]) -> list[ThemeStrength]:
    described = {p.name: _describe(p) for p in projects}
    df = Counter(t for d in described.values() for t in d.terms)
    idf = {t: math.log((len(projects) + 1) / (n + 0.5)) for t, n in df.items()}
    strengths = []
    for project in projects:
        d = described[project.name]
        counted: Counter[str] = Counter()
        for sentence_terms in index._terms:
            shared = sentence_terms & d.terms
            counted.update(shared if len(shared) >= 2 else shared & d.key)
        weights = {}
        for term in d.terms:
            seen = SALIENT_SENTENCES if term in index.title_terms else min(counted[term], SALIENT_SENTENCES)
            weights[term] = idf[term] * seen / SALIENT_SENTENCES
            if term in d.names and seen == SALIENT_SENTENCES:
                weights[term] *= 2
        total = sum(idf[t] for t in d.terms) or 1.0
        shared_terms = sorted((t for t, w in weights.items() if w > 0), key=lambda t: (-weights[t], t))
        strengths.append(
            ThemeStrength(
                theme=project.theme,
                project=project.name,
                score=round(min(1.0, sum(weights.values()) / total), 4),
                shared=tuple(index.surface(t) for t in shared_terms),
            )
        )
    return sorted(strengths, key=lambda s: (-s.score, s.theme, s.project))


@cache
def projects_index(projects: tuple[Project, ...]) -> EvidenceIndex:
    """The team's project descriptions as an index: what a sentence that pads with the prompt's context matches."""
    return EvidenceIndex([f"{p.theme}: {p.name}. {p.description}" for p in projects])


# --- calibration -------------------------------------------------------------------------------


def quartiles(values: Sequence[float]) -> tuple[float, float, float, float, float]:
    """min, first quartile, median, third quartile, max (inclusive method); zeros for no values."""
    if not values:
        return (0.0, 0.0, 0.0, 0.0, 0.0)
    if len(values) == 1:
        return (values[0],) * 5
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (min(values), q1, q2, q3, max(values))


def _row(name: str, values: Sequence[float], failing: int) -> str:
    stats = " | ".join(f"{v:.2f}" for v in quartiles(values))
    return f"| {name} | {len(values)} | {stats} | {failing} |"


def grounding_report(
    entries: Sequence[Mapping[str, Any]],
    evidence: Mapping[str, Evidence],
    projects: list[Project],
    *,
    min_support: float,
    max_similarity: float,
    min_theme_strength: float,
    padding_margin: float,
    expected_themes: Mapping[str, str] | None = None,
) -> str:
    """The score distributions the content gates' thresholds are chosen from, as a Markdown table.

    `entries` are data/eval_replies.json's labelled replies; `evidence` maps their example ids to the evidence.
    Invented sentences are an entry's `invented` list, or, without one, every TL;DR and summary sentence of a bad
    entry that must fail `grounded` (a faithful reply in the wrong language has an empty list). The last column
    counts the values on the failing side of the threshold: for good replies it should be 0, for bad ones as many
    as possible.
    """
    indexes = {example: EvidenceIndex.from_evidence(ev) for example, ev in evidence.items()}
    padding_index = projects_index(tuple(projects))
    good_support: list[float] = []
    invented_support: list[float] = []
    good_lowest: list[float] = []
    bad_lowest: list[float] = []
    invented_caught = invented_total = 0
    good_similar: list[float] = []
    bad_similar: list[float] = []
    good_padding: list[float] = []
    bad_padding: list[float] = []
    good_themes: list[float] = []
    unearned_themes: list[float] = []
    good_replies = {e["example_id"]: e["reply"] for e in entries if e["label"] == "good"}
    for entry in entries:
        index = indexes[entry["example_id"]]
        reply = entry["reply"]
        prose = reply_sentences(reply["tldr"]) + reply_sentences(reply["summary"])
        everything = prose + reply_sentences([p["relevance"] for p in reply["projects"]])
        supports = {s: index.support(s) for s in prose}
        pairs = [similarity(a, b) for i, a in enumerate(everything) for b in everything[i + 1 :]]
        strengths = {t.theme: t.score for t in theme_strengths(index, projects)}
        margins = {s: padding_index.support(s).score - supports[s].score for s in prose}
        if entry["label"] == "good":
            good_support += [sup.score for sup in supports.values()]
            good_lowest.append(min(sup.score for sup in supports.values()))
            good_similar.append(max(pairs, default=0.0))
            good_padding += margins.values()
            good_themes += [strengths[p["theme"]] for p in reply["projects"]]
            continue
        fails = set(entry["fails"])
        invented = entry.get("invented", prose if "grounded" in fails else [])
        if "grounded" in fails:
            invented_support += [index.support(s).score for s in invented]
            invented_total += len(invented)
            invented_caught += sum(
                1 for s in invented if index.support(s).score < min_support or index.support(s).unknown_names
            )
            bad_lowest.append(min(sup.score for sup in supports.values()))
        if "no_repetition" in fails:
            bad_similar.append(max(pairs, default=0.0))
        if "no_padding" in fails:
            bad_padding += [padding_index.support(s).score - index.support(s).score for s in invented]
        if "earned_relevance" in fails:
            earned = {p["theme"] for p in good_replies.get(entry["example_id"], {}).get("projects", [])}
            unearned_themes += [strengths[p["theme"]] for p in reply["projects"] if p["theme"] not in earned]
    rows = [
        "| measure | n | min | Q1 | median | Q3 | max | on the failing side |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        _row("support, good TL;DR and summary sentences", good_support, sum(v < min_support for v in good_support)),
        _row("support, invented sentences", invented_support, sum(v < min_support for v in invented_support)),
        _row("lowest support per good reply", good_lowest, sum(v < min_support for v in good_lowest)),
        _row(
            "lowest support per bad reply that must fail grounded", bad_lowest, sum(v < min_support for v in bad_lowest)
        ),
        _row("most similar sentence pair per good reply", good_similar, sum(v >= max_similarity for v in good_similar)),
        _row(
            "most similar sentence pair per repeating reply", bad_similar, sum(v >= max_similarity for v in bad_similar)
        ),
        _row(
            "projects minus evidence support, good sentences",
            good_padding,
            sum(v > padding_margin for v in good_padding),
        ),
        _row(
            "projects minus evidence support, padding sentences",
            bad_padding,
            sum(v > padding_margin for v in bad_padding),
        ),
        _row(
            "theme strength, good replies' project lines", good_themes, sum(v < min_theme_strength for v in good_themes)
        ),
        _row(
            "theme strength, unearned themes of bad replies",
            unearned_themes,
            sum(v < min_theme_strength for v in unearned_themes),
        ),
    ]
    if expected_themes:
        expected = []
        for example, theme in expected_themes.items():
            if example not in indexes:
                indexes[example] = EvidenceIndex.from_evidence(evidence[example])
            expected += [t.score for t in theme_strengths(indexes[example], projects) if t.theme == theme]
        rows.append(
            _row(
                "theme strength, expected theme of each example",
                expected,
                sum(v < min_theme_strength for v in expected),
            )
        )
    summary = (
        f"\nThresholds: min_support {min_support:.2f}, max_similarity {max_similarity:.2f}, "
        f"min_theme_strength {min_theme_strength:.2f}, padding_margin {padding_margin:.2f}. Invented sentences "
        f"caught by support or by an unknown number or name: {invented_caught} of {invented_total}."
    )
    return "\n".join(rows) + summary


def main() -> None:
    """`python -m composer.grounding`: the calibration table of data/eval_replies.json at the default thresholds."""
    import json

    from composer.content_gates import ContentGateConfig
    from composer.projects import load_projects
    from technoshare_common.settings import REPO_DATA_DIR

    examples = {e["id"]: e for e in json.loads((REPO_DATA_DIR / "eval_dataset.json").read_text())["examples"]}
    entries = json.loads((REPO_DATA_DIR / "eval_replies.json").read_text())["entries"]
    config = ContentGateConfig()
    report = grounding_report(
        entries,
        {example_id: Evidence.model_validate(e["evidence"]) for example_id, e in examples.items()},
        load_projects(REPO_DATA_DIR / "projects.yaml"),
        min_support=config.min_support,
        max_similarity=config.max_similarity,
        min_theme_strength=config.min_theme_strength,
        padding_margin=config.padding_margin,
        expected_themes={example_id: e["expected_theme"] for example_id, e in examples.items()},
    )
    print(report)


if __name__ == "__main__":
    main()
