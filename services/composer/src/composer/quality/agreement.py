"""Whether a reply sentence says what its best evidence says, beyond sharing its words.

Three disagreements that word overlap cannot see, each checked against the one or two evidence sentences that
support the sentence best (composer.quality.evidence):

- polarity: a word the two share is negated in one and affirmed in the other ("adds inference latency" against
  "no additional inference latency");
- numbers: a number of the sentence is not in that evidence, comes with another unit ("10,000 GB" for "10,000
  times"), or belongs to other words there ("3 times fewer parameters" where 3 times is the memory saving);
- comparatives: the sentence says "more" where the evidence says "fewer", "faster" where it says "slower".

Hand-written rules over the sentence's own words: a model could judge entailment better (a configured judge model
does, composer.entailment), but these run on every sentence of every reply for free, with no model at all.
"""

import re
from collections.abc import Iterator, Sequence

from composer.quality.terms import normalize_numbers, term

NEGATIONS = frozenset({"not", "no", "never", "without", "cannot", "none", "nor", "neither", "nothing", "nobody"})
MIN_FLIPPED = 2  # one flipped word is as often a different clause as a contradiction ("X, not Y")
MIN_MISPLACED = 2  # a number's clause shares this many words with another number's clause, and none with its own
NOT_NEGATIONS = (("not", "only"), ("no", "matter"))  # "not only fast but also…" negates nothing
NARROW_NEGATIONS = frozenset({("no", "need"), ("not", "need"), ("no", "longer")})  # deny the need, not the deed

NEGATION_REACH = 3  # content words after a negation, within its clause, that it negates
SUBJECT_REACH = 2  # before a negated predicate ("inference latency does not increase"): said neither way
PREDICATE_NEGATIONS = frozenset({"not", "never", "cannot"})  # "no" and "without" negate what follows only
_CLAUSE = re.compile(r"[,;:.!?()\u2013\u2014]|\s-\s|\bbut\b|\bwhile\b|\bwhereas\b")
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:[a-zA-Z%\u00d7]{1,2})?|[^\W\d_]+(?:['\u2019][a-z]+)?|[\u00d7%]")
_NUMBER_CLAUSE = re.compile(r"[;:()]|,(?!\d)|\band\b|\bwhile\b|\bwhereas\b|\bbut\b")
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)([a-zA-Z%\u00d7]{0,2})$")

# A unit as its canonical name: the word or suffix right after a number.
UNITS = {
    "x": "times",
    "\u00d7": "times",
    "times": "times",
    "fold": "times",
    "%": "percent",
    "percent": "percent",
    "gb": "GB",
    "mb": "MB",
    "kb": "KB",
    "tb": "TB",
    "ms": "ms",
    "s": "seconds",
    "sec": "seconds",
    "seconds": "seconds",
    "minutes": "minutes",
    "hours": "hours",
    "days": "days",
    "k": "thousand",
    "b": "billion",
    "million": "million",
    "billion": "billion",
    "tokens": "tokens",
    "gpus": "GPUs",
    "layers": "layers",
    "steps": "steps",
}

# Pairs of opposite comparatives: a sentence with one side, over evidence with only the other, says the opposite.
OPPOSITES: tuple[tuple[frozenset[str], frozenset[str]], ...] = tuple(
    (frozenset(a.split()), frozenset(b.split()))
    for a, b in (
        ("more", "fewer less"),
        ("higher", "lower"),
        ("larger bigger", "smaller"),
        ("increase increases increased increasing", "decrease decreases decreased decreasing reduce reduces reduced"),
        ("faster quicker", "slower"),
        ("better", "worse"),
        ("outperform outperforms outperformed", "underperform underperforms underperformed"),
        ("improve improves improved", "degrade degrades degraded hurt hurts worsen worsens"),
        ("longer", "shorter"),
        ("cheaper", "costlier"),
        ("rose rise rises risen grew grow grows", "fell fall falls fallen dropped drop drops declined"),
        ("easier simpler", "harder"),
    )
)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _TOKEN.findall(normalize_numbers(text))]


def _clauses(text: str) -> list[list[str]]:
    return [words for piece in _CLAUSE.split(normalize_numbers(text)) if (words := _words(piece))]


def _negation(words: list[str], position: int) -> bool:
    word = words[position]
    if word.endswith(("n't", "n\u2019t")):
        return True
    if word not in NEGATIONS:
        return False
    following = words[position + 1] if position + 1 < len(words) else ""
    return (word, following) not in NOT_NEGATIONS


def polarities(text: str) -> tuple[set[str], set[str]]:
    """The content terms a negation covers (the NEGATION_REACH content words after it, within its clause: "no
    additional inference latency"), and the terms said plainly. The subject of a negated predicate ("inference
    latency does not increase") is neither: the sentence does not deny it, and does not affirm it either."""
    negated: set[str] = set()
    affirmed: set[str] = set()
    for words in _clauses(text):
        stems = [(position, stem) for position, word in enumerate(words) if (stem := term(word)) is not None]
        cues = [position for position in range(len(words)) if _negation(words, position)]
        covered: set[int] = set()
        subjects: set[int] = set()
        for cue in cues:
            if words[cue] in PREDICATE_NEGATIONS or words[cue].endswith(("n't", "n\u2019t")):
                subjects.update([p for p, _ in stems if p < cue][-SUBJECT_REACH:])
            following = words[cue + 1] if cue + 1 < len(words) else ""
            reach = 1 if (words[cue], following) in NARROW_NEGATIONS else NEGATION_REACH
            covered.update([p for p, _ in stems if p > cue][:reach])
        for position, stem in stems:
            if position in covered:
                negated.add(stem)
            elif position not in subjects:
                affirmed.add(stem)
    return negated, affirmed


def _cues(text: str) -> int:
    words = _words(text)
    return sum(_negation(words, position) for position in range(len(words)))


def _polarity_conflicts(sentence: str, evidence: str) -> Iterator[str]:
    """Two or more shared words negated on one side only; a sentence with two negations is beyond these rules."""
    if _cues(sentence) > 1:
        return
    negated, affirmed = polarities(sentence)
    evidence_negated, evidence_affirmed = polarities(evidence)
    flipped = sorted(
        (negated & evidence_affirmed - evidence_negated) | (affirmed & evidence_negated - evidence_affirmed)
    )
    if len(flipped) >= MIN_FLIPPED:
        yield f"says the opposite of its evidence about {', '.join(flipped[:4])}"


def _numbers(text: str) -> list[tuple[str, str | None, frozenset[str]]]:
    """Each number of a text with its unit and the content terms of its clause (up to an "and" or a comma): what
    it counts. "parameters by 10,000 times and GPU memory by 3 times" gives 3 to the memory, not the parameters."""
    found = []
    for clause in _NUMBER_CLAUSE.split(normalize_numbers(text)):
        words = _words(clause)
        context = frozenset(t for w in words if w not in UNITS and not _NUMBER.match(w) and (t := term(w)) is not None)
        for position, word in enumerate(words):
            match = _NUMBER.match(word)
            if not match:
                continue
            value, suffix = match.group(1), match.group(2).lower()
            after = words[position + 1] if position + 1 < len(words) else ""
            unit = UNITS.get(suffix) if suffix else UNITS.get(after)
            found.append((value, unit, context))
    return found


def _number_conflicts(sentence: str, evidence: str) -> Iterator[str]:
    ours = _numbers(sentence)
    if not ours:
        return
    theirs = _numbers(evidence)
    for value, unit, context in ours:
        same = [(u, c) for v, u, c in theirs if v == value]
        if not same:
            yield f"{value} is not in its supporting evidence"
            continue
        units = {u for u, _ in same}
        if unit is not None and None not in units and unit not in units:
            yield f"{value} {unit} is {value} {'/'.join(sorted(u for u in units if u))} in the evidence"
            continue
        own_context = frozenset().union(*(c for _, c in same))
        others = frozenset().union(*(c for v, _, c in theirs if v != value))
        if own_context and not context & own_context and len(context & others) >= MIN_MISPLACED:
            yield f"{value} is said of other things in the evidence ({', '.join(sorted(context & others)[:3])})"


COMPARED_REACH = 2  # the content words after a comparative (or before it, at a clause's end) are what it compares


def _comparisons(text: str) -> list[tuple[str, frozenset[str]]]:
    """Each comparative word of a text with the content terms it is said of ("fewer trainable parameters")."""
    found = []
    for words in _clauses(text):
        for position, word in enumerate(words):
            if not any(word in side for pair in OPPOSITES for side in pair):
                continue
            after = [t for w in words[position + 1 :] if (t := term(w)) is not None][:COMPARED_REACH]
            before = [t for w in words[:position] if (t := term(w)) is not None][-COMPARED_REACH:]
            found.append((word, frozenset(after or before)))
    return found


def _comparative_conflicts(sentence: str, evidence: str) -> Iterator[str]:
    """A comparative of the sentence whose opposite the evidence says of the same thing, and which the evidence
    never says of it ("more trainable parameters" against "fewer trainable parameters")."""
    theirs = _comparisons(evidence)
    for word, compared in _comparisons(sentence):
        for a, b in OPPOSITES:
            if word not in a and word not in b:
                continue
            same, other = (a, b) if word in a else (b, a)
            agreeing = [t for w, t in theirs if w in same and t & compared]
            opposing = [w for w, t in theirs if w in other and t & compared]
            if opposing and not agreeing:
                yield f"{word!r} where the evidence says {opposing[0]!r}"


def conflicts(sentence: str, evidence: Sequence[str]) -> Iterator[str]:
    """How a sentence disagrees with the evidence sentences that support it best; nothing when they agree."""
    if not evidence:
        return
    joined = " ".join(evidence)
    if " ".join(sentence.lower().split()) in " ".join(joined.lower().split()):
        return  # a quote says what its source says
    yield from _polarity_conflicts(sentence, joined)
    yield from _number_conflicts(sentence, joined)
    yield from _comparative_conflicts(sentence, joined)
