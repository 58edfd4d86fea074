"""Whether a sentence reads on its own, away from the page it came from.

A reply's sentence has no figure, table, list or preceding paragraph around it. So it must not point at one
("as shown below", "this figure"), must not open with a pronoun or demonstrative whose antecedent the reply
lacks ("This improvement to probing behavior…" with no improvement said before), must not be a list item cut
from its list ("Convert Python types (str, int, float, bool, list, etc)."), and must not end in a colon that
announced what followed it. The standalone gate (composer.quality.content) and the extractive ranking
(composer.extractive) share these rules.
"""

import re
from collections.abc import Sequence

from composer.quality.terms import terms

_POINTER = re.compile(
    r"\b(?:(?:see|shown|listed|described|illustrated|given|as|explained|discussed)\s+(?:below|above)"
    r"|^(?:below|above)\b"
    r"|(?:example|figure|table|code|list|diagram|snippet|section|command)s?\s+(?:above|below)"
    r"|(?:this|the following|the next|the previous|the figure|the table|the diagram)\s+"
    r"(?:figure|table|diagram|chart|plot|graph|image|screenshot|listing|snippet|code|example|section|list)"
    r"|(?:figure|fig\.|table|section|eq\.|equation|listing)\s*\d"
    r"|^here is|^here are|^here's)",
    re.IGNORECASE,
)
_ETC = re.compile(r"\betc\.?\)|\(e\.g\.?,?\s*\w+\)$")
DEMONSTRATIVES = frozenset({"this", "these", "those", "such"})  # not "that": "That said, …" opens on its own
# Nouns that name what the sentence before said ("This approach", "These models"): fine after a sentence.
GENERIC_REFERENTS = frozenset(
    (
        *("approach", "method", "methods", "design", "technique", "model", "models", "system", "tool", "tools"),
        *("library", "framework", "change", "changes", "update", "updates", "feature", "features", "version"),
        *("idea", "result", "results", "step", "steps", "way", "process", "setup", "option", "options"),
    )
)
PRONOUNS = frozenset({"it", "its", "they", "their", "them", "he", "she", "his", "her"})
# Openers that continue the sentence before them: fine after it, dangling at the head of a section.
CONNECTIVES = frozenset(
    (
        *("finally", "thus", "however", "also", "then", "next", "therefore", "hence", "instead", "otherwise"),
        *("similarly", "additionally", "moreover", "furthermore", "so", "but", "and", "or", "again", "still"),
        *("meanwhile", "consequently", "another", "likewise", "accordingly", "both", "besides", "nevertheless"),
    )
)
# Openers of more than one word that lean on what came before ("As a result, …", "The former …").
_CONTINUATION = re.compile(
    r"^(?:as a result|in particular|as mentioned|as noted|as discussed|in addition|on the other hand|for example|"
    r"for instance|the former|the latter|the above|the same|in this case|in that case|to do so|here we|in turn)\b",
    re.IGNORECASE,
)
_FINITE = re.compile(
    r"\b(?:is|are|was|were|has|have|had|can|could|will|would|does|do|did|may|might|must|should|supports?|"
    r"provides?|lets|makes|uses|runs|keeps|adds|gives)\b",
    re.IGNORECASE,
)
# After a demonstrative, a verb (not a noun) means it refers to the whole previous sentence ("This makes…").
_VERBS = frozenset(
    (
        *("is", "are", "was", "were", "has", "have", "had", "can", "could", "will", "would", "may", "might"),
        *("should", "must", "does", "do", "did", "also", "means", "makes", "allows", "lets", "enables", "gives"),
        *("leads", "results", "reduces", "improves", "helps", "requires", "works", "keeps", "avoids", "ensures"),
        *("includes", "provides", "shows", "explains"),
    )
)
# "This paper", "This post": the source itself, which the reply is about.
SELF_REFERENCES = frozenset(
    (
        *("paper", "work", "report", "post", "article", "repository", "repo", "project", "library", "tool"),
        *("guide", "page", "blog", "document", "tutorial", "release", "book", "study", "survey"),
    )
)
_OPENER = re.compile(r"^[\"'\u201c(]*([A-Za-z]+)(?=[\s,;])[\s,;]*([A-Za-z-]*)")


def pointer(sentence: str) -> str | None:
    """What the sentence points at outside itself (a figure, "below"), if anything."""
    match = _POINTER.search(sentence)
    return match.group().strip() if match else None


def dangling_opener(sentence: str, before: Sequence[str]) -> str | None:
    """The opening pronoun or demonstrative whose antecedent the sentences before it in the reply lack."""
    continuation = _CONTINUATION.match(sentence)
    if continuation:
        return continuation.group() if not before else None
    match = _OPENER.match(sentence)
    if not match:
        return None
    first, second = match.group(1).lower(), match.group(2).lower()
    if first in PRONOUNS or first in CONNECTIVES:
        return match.group(1) if not before else None
    if first not in DEMONSTRATIVES:
        return None
    if second in SELF_REFERENCES:
        return None
    if not before:
        return f"{match.group(1)} {match.group(2)}".strip()
    if not second or second in _VERBS or second in GENERIC_REFERENTS:
        return None
    if first in ("this", "that") and second.endswith("s") and not second.endswith("ss"):
        return (
            None  # a singular demonstrative before a word in -s: a verb ("This performs…"), said of the sentence before
        )
    if terms(second) & terms(" ".join(before[-2:])):
        return None
    return f"{match.group(1)} {match.group(2)}"


def fragment(sentence: str, listed: frozenset[str] = frozenset()) -> str | None:
    """Why the sentence is a list fragment or a lead-in, not a sentence: a list item of the source, an
    enumeration ending in "etc.)", or a colon at its end."""
    stripped = sentence.rstrip()
    if stripped.endswith(":"):
        return "ends with a colon"
    # A listed sentence with a subject and its verb ("Ruff is 10 to 100 times faster…") is a sentence; one that
    # opens with its verb ("Runs and installs tools…") is an item of its list.
    if sentence in listed and not _FINITE.search(sentence.split(" ", 1)[-1]):
        return "is a list item of the source"
    if _ETC.search(stripped):
        return "is a list fragment"
    return None


def standalone_problem(sentence: str, before: Sequence[str], listed: frozenset[str] = frozenset()) -> str | None:
    """Why the sentence cannot stand alone after `before` (the reply's sentences before it), if it cannot."""
    if found := pointer(sentence):
        return f'points outside the reply ("{found}")'
    if found := dangling_opener(sentence, before):
        return f'opens with "{found}" but the reply has not said what it refers to'
    return fragment(sentence, listed)
