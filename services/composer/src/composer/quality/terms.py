"""Text measures: content-word terms, numbers and names, and sentence similarity.

Terms are content-word stems (sumy's English stop words and stemmer, NLTK's Snowball, which needs no downloaded
data). Sentences are cut by technoshare_common.text, the one splitter every check and retrieval share.
"""

import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

from rapidfuzz import fuzz
from sumy.nlp.stemmers import Stemmer
from sumy.utils import get_stop_words

from technoshare_common.text import split_sentences, strip_markup

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
MIN_TERM_CHARS = 3

_STEMMER = Stemmer("english")

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CONTRACTION = re.compile(r"n['\u2019]t\b|['\u2019](?:s|t|re|ve|ll|d|m)\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")
_ACRONYM_PLURAL = re.compile(r"\b([A-Z][A-Z0-9]+)s\b")  # LLMs, KVs, GPUs: the acronym's term
_BRITISH = re.compile(r"(?<=[a-z]{3})is(e|es|ed|ing|ation|ations|er|ers)$")


def normalize_numbers(text: str) -> str:
    """10,000 and 10000 are the same number."""
    return _THOUSANDS.sub("", text)


@lru_cache(maxsize=65536)
def term(word: str) -> str | None:
    """A lowercased word's term: its stem, the word itself when it has digits, None for a stop word."""
    if not word.isalpha() and any(c.isdigit() for c in word):
        return word
    if len(word) < MIN_TERM_CHARS or word in STOP_WORDS:
        return None
    return _STEMMER(_BRITISH.sub(r"iz\1", word))  # quantised and quantized share a stem


def term_words(text: str) -> Iterator[tuple[str, str]]:
    """(stem, surface word) for each content word of a text, in order."""
    text = _CONTRACTION.sub("", _ACRONYM_PLURAL.sub(r"\1", normalize_numbers(strip_markup(text))).lower())
    for word in _WORD.findall(text):
        stem = term(word)
        if stem is not None:
            yield stem, word


_HYPHENATED = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)+")


def compounds(text: str) -> frozenset[str]:
    """Hyphenated words also as one word: an evidence that says pre-trained supports a reply that says pretrained."""
    if "-" not in text:
        return frozenset()
    joined = ("".join(m.group().lower().split("-")) for m in _HYPHENATED.finditer(text))
    return frozenset(t for word in joined if (t := term(word)))


def terms(text: str) -> set[str]:
    """Lowercased content-word stems: stop words (sumy's English list and a few domain words) and words under
    three characters dropped, tokens with digits kept whole."""
    return {stem for stem, _ in term_words(text)}


# --- names and numbers -------------------------------------------------------------------------

_NAME_TOKEN = re.compile(r"[^\W_](?:[\w+]|[-./'\u2019](?=[^\W_]))*")
_NUMBER_SUFFIX = re.compile(r"^(\d+(?:\.\d+)?)[a-z]{1,2}$")
MULTIPLIER = re.compile(r"^(\d+(?:\.\d+)?)x$")
_CAMEL = re.compile(r"[a-z][A-Z]|[A-Z]{2}")


def is_name(token: str, first: bool) -> bool:
    """A number or a proper name: digits, an acronym, CamelCase, or a capitalised word not opening the sentence."""
    if any(c.isdigit() for c in token):
        return True
    if token.lower() in STOP_WORDS:  # README, The, I
        return False
    if _CAMEL.search(token):
        return True
    return len(token) >= 2 and token[0].isupper() and not first


_POSSESSIVE = re.compile(r"['\u2019]s\b")


def vocabulary_words(text: str) -> set[str]:
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
        if is_name(token, first=position == 0):
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
