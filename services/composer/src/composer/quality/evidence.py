"""The evidence index: which evidence sentences support a sentence of the reply, and whether they say the same.

Deterministic text statistics, no model. The measure that decides whether a sentence is grounded is local: the
share of the sentence's content terms found in its best-matching evidence sentence, or in the best two evidence
sentences together, wherever they are (a reply sentence often fuses two, the title and a sentence of the abstract
for one). It is never measured against the evidence as a whole: a long README shares common words with any
sentence at all. Numbers and proper names are checked apart, against the whole evidence (URLs included), since
one invented name can hide in a supported sentence.

Shared words are not yet agreement: "LoRA adds inference latency" shares every word with "no additional inference
latency". So the sentence must also agree with its best evidence (composer.quality.agreement): the same polarity
for the words they share, its numbers in that evidence with the same units and about the same things, and no
comparative turned into its opposite.
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from composer.quality.agreement import conflicts
from composer.quality.terms import (
    MULTIPLIER,
    compounds,
    is_name,
    names,
    normalize_numbers,
    term_words,
    terms,
    vocabulary_words,
)
from technoshare_common.schemas import Evidence
from technoshare_common.text import evidence_sentences, prose_words

LEAD_SENTENCES = 8  # of the body: the link's opening, for what it is about (composer.quality.semantic)


@dataclass(frozen=True)
class Support:
    score: float  # share of the sentence's content terms found in best_evidence (1.0 for a sentence without any)
    best_evidence: str  # one evidence sentence, or two joined with " … "
    unsupported_terms: tuple[str, ...]  # the sentence's content words missing from best_evidence
    unknown_names: tuple[str, ...]  # numbers and names found nowhere in the evidence
    conflicts: tuple[str, ...]  # how the sentence disagrees with best_evidence (polarity, numbers, comparatives)

    def supported(self, min_support: float) -> bool:
        return self.score >= min_support and not self.unknown_names and not self.conflicts


class EvidenceIndex:
    """The evidence's sentences with their terms, for grounding reply sentences one at a time."""

    def __init__(
        self,
        sentences: Sequence[str],
        vocabulary_texts: Iterable[str] | None = None,
        title: str = "",
        listed: Iterable[str] = (),
    ) -> None:
        """`vocabulary_texts`: where numbers and names may occur (the raw texts the sentences came from, URLs
        included); by default the sentences themselves. `listed`: the sentences that are list items, which read
        as fragments on their own."""
        self.sentences: list[str] = list(dict.fromkeys(sentences))
        self.title = " ".join(title.split())
        self.listed = frozenset(listed)
        # The body's first prose sentences (no authors, metadata or list items): what the link is about.
        self.lead: list[str] = [s for s in self.sentences if s != self.title and s not in self.listed][:LEAD_SENTENCES]
        self.title_terms = frozenset(terms(title))
        self._terms: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = {}
        self._surface_counts: Counter[tuple[str, str]] = Counter()  # (stem, word) -> occurrences
        self._surfaces: dict[str, str] | None = None
        self.term_counts: Counter[str] = Counter()  # in how many sentences each term occurs
        for position, sentence in enumerate(self.sentences):
            found: dict[str, str] = {}
            pairs = list(term_words(sentence))
            self._surface_counts.update(pairs)
            for stem, word in pairs:
                found.setdefault(stem, word)
            sentence_terms = frozenset(found) | compounds(sentence)
            self._terms.append(sentence_terms)
            for stem in sentence_terms:
                self._postings.setdefault(stem, []).append(position)
        self.term_counts.update({stem: len(ids) for stem, ids in self._postings.items()})
        self._vocabulary: set[str] = set()
        characters: set[str] = set()
        for text in self.sentences if vocabulary_texts is None else vocabulary_texts:
            self._vocabulary |= vocabulary_words(text)
            characters.update(text)
        self.characters = frozenset(characters)  # every character of the evidence, for the script check
        self.text = " ".join(self.sentences)
        self._normalized = " ".join(self.text.lower().split())
        self._supports: dict[str, Support] = {}
        self.memo: dict[object, object] = {}  # what other measures computed on this evidence (theme strengths)

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
        listed = []
        lead: list[str] = []
        for text in [*head[1:], *bodies, *extra]:
            for sentence in evidence_sentences(text):
                sentences.append(sentence.text)
                if sentence.listed:
                    listed.append(sentence.text)
                elif text in bodies and len(lead) < LEAD_SENTENCES:
                    lead.append(sentence.text)
        vocabulary = [*head, *bodies, *extra, evidence.url, evidence.final_url]
        index = cls(sentences, vocabulary_texts=vocabulary, title=evidence.title, listed=listed)
        index.lead = lead
        return index

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
        multiplier = MULTIPLIER.match(token)
        if token in self._vocabulary or (multiplier and multiplier.group(1) in self._vocabulary):
            return True
        parts = [p for p in re.split(r"[-./'\u2019]", name) if p]
        if len(parts) < 2:
            return False
        return all(self.known(p) for p in parts if is_name(p, first=False))

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
        for stem, word in term_words(sentence):
            words.setdefault(stem, word)
        unknown = self.unknown_names(sentence)
        if not words:
            return Support(1.0, "", (), unknown, ())
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
        evidence = [self.sentences[p] for p in best]
        return Support(
            round(best_mask.bit_count() / len(stems), 4),
            " … ".join(evidence),
            missing,
            unknown,
            () if self.contains_verbatim(sentence) else tuple(conflicts(sentence, evidence)),
        )


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
