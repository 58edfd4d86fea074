"""The extractive compose mode: every TL;DR and summary sentence is a sentence of the source.

A small model cannot be trusted to write facts, so here it only chooses which of the top-ranked source
sentences lead the reply. Code does the rest: sumy's LexRank ranks the source's sentences, the summary takes
the next best in reading order, and the project lines name the terms the source shares with each project
(composer.quality.themes), strongest first. The same code with no model at all makes the
degraded reply posted when the LLM is unavailable.
"""

import asyncio
import dataclasses
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from pydantic import ValidationError
from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence
from sumy.nlp.stemmers import Stemmer
from sumy.summarizers.lex_rank import LexRankSummarizer
from sumy.utils import get_stop_words

from composer.commentary import lead_sentences, project_lines, source_kind
from composer.llm import LLMClient, LLMUnavailable, parse_json_object
from composer.output_schemas import response_format
from composer.projects import Project
from composer.prompts import PromptTemplate, prompt_length
from composer.quality.content import MARKUP_PATTERNS
from composer.quality.evidence import EvidenceIndex
from composer.quality.gates import GateConfig
from composer.quality.standalone import standalone_problem
from composer.quality.terms import normalized_words, terms, word_similarity
from composer.quality.themes import ThemeStrength
from composer.settings import ComposerSettings
from technoshare_common.schemas import ComposedReply, Evidence, TokenUsage
from technoshare_common.text import count_sentences

_WORD = re.compile(r"\w[\w'-]*")
# Quotable prose has no links and no table, heading or emphasis debris (`*` would even turn bold in Slack).
_NOT_PROSE = re.compile(r"https?://|www\.|[<>|`#*_=]|\.\.\.|[!?:;,]\.")
# README boilerplate that points elsewhere instead of saying something ("See the docs to get started."), and
# instructions, which say what to do rather than what the thing is ("Declare the body using…").
_POINTER = re.compile(
    r"^(?:see|read|check|click|visit|follow|join|please|refer|note|install|run|use|declare|convert|add|create|"
    r"try|make|set|go|get|import|define|call|open|build|write|deploy|start|clone|download|configure|enable|"
    r"imagine|now|let's|let us|if you|you can|you don't|you do)\b",
    re.IGNORECASE,
)
# A pronoun among a sentence's first words refers to something said before it ("If it is in use, …").
_EARLY_REFERENCE = re.compile(
    r"^(?:\S+\s+){0,3}(?:it|its|they|them|their|this|these|those)\b(?!\s+(?:paper|post|work))"
)
_SEE_ELSEWHERE = re.compile(r"\bsee (?:the|our|its|their)\b", re.IGNORECASE)  # ", see the section Benchmarks."
TITLE_TERM_WEIGHT = 3  # ranks a sentence gains per term it shares with the title (the classic title feature)
MIN_WORDS, MAX_WORDS = 6, 60

DEGRADED_NOTE = "The language model was unavailable, so these sentences are quoted from the source as ranked by code."
SHORT_SOURCE_NOTE = "Only {count} more sentences of the source could be quoted, so the summary is short."


class _Words:
    """sumy's tokenizer interface; its own needs NLTK's punkt data, which cannot be downloaded here."""

    language = "english"

    @staticmethod
    def to_words(text: str) -> list[str]:
        return _WORD.findall(text)

    @staticmethod
    def to_sentences(text: str) -> list[str]:
        return [text]


def quotable(sentence: str, listed: frozenset[str] = frozenset()) -> bool:
    """Prose the gates will take as one plain sentence that reads on its own, so quoting it can never fail them
    (replies are in a Latin-script language: REPLY_LANGUAGE's default, English). A sentence opening with a pronoun
    or a demonstrative is left out wherever it would stand, since its antecedent may not be quoted before it."""
    words = len(sentence.split())
    return (
        MIN_WORDS <= words <= MAX_WORDS
        and (sentence[0].isupper() or sentence[0].isdigit())  # not a fragment cut mid-sentence
        and sentence[-1] in ".!?"
        and count_sentences(f"It begins. {sentence} It ends.") == 3  # one sentence, wherever the reply puts it
        and not _NOT_PROSE.search(sentence)
        and not _POINTER.match(sentence)
        and not _EARLY_REFERENCE.match(sentence.lower())
        and not _SEE_ELSEWHERE.search(sentence)
        and not any(pattern.search(sentence) for pattern, _ in MARKUP_PATTERNS)
        and all("LATIN" in unicodedata.name(char, "") for char in sentence if char.isalpha())
        and standalone_problem(sentence, (), listed) is None
    )


def sentence_budget(available: int, tldr: int, summary_min: int) -> tuple[int, int]:
    """TL;DR and minimum summary sentences a source of `available` sentences can carry without repeating itself."""
    tldr = min(tldr, max(1, available - 1))
    return tldr, min(summary_min, max(1, available - tldr))


def gates_for_source(config: GateConfig, index: EvidenceIndex) -> GateConfig:
    """The gates as they apply to this source, in every compose mode and in the evaluation suite: a short source
    lowers the lengths asked of the reply to what it can carry, instead of inviting padding."""
    available = len(quotable_sentences(index, config.content.max_similarity))
    tldr, summary_min = sentence_budget(available, config.tldr_sentences, config.summary_min)
    return dataclasses.replace(config, tldr_sentences=tldr, summary_min=summary_min)


MAX_QUOTABLE = 200  # sentences considered on a long page (pairwise deduplication and LexRank are quadratic)


def quotable_sentences(index: EvidenceIndex, max_similarity: float) -> list[str]:
    """The source's quotable sentences in reading order, a near-duplicate of an earlier one dropped: what a reply
    can say without repeating itself, so also how many sentences the gates may ask of a short source. Memoised on
    the index: a job asks three times (the notice check, the gates' lengths, the ranking)."""
    key = ("quotable", max_similarity)
    if key not in index.memo:
        index.memo[key] = _quotable_sentences(index, max_similarity)
    return list(index.memo[key])  # type: ignore[call-overload]


def _quotable_sentences(index: EvidenceIndex, max_similarity: float) -> list[str]:
    kept: list[str] = []
    kept_words: list[str] = []
    for sentence in dict.fromkeys(s for s in index.sentences if quotable(s, index.listed)):
        words = normalized_words(sentence)
        if all(word_similarity(words, earlier) < max_similarity for earlier in kept_words):
            kept.append(sentence)
            kept_words.append(words)
            if len(kept) == MAX_QUOTABLE:
                break
    return kept


def rank_sentences(index: EvidenceIndex, max_similarity: float) -> list[str]:
    """quotable_sentences() best first, by LexRank lifted by the title's terms. Centrality alone favours an arXiv
    abstract's opening background over its "we propose" sentence."""
    title_terms = index.title_terms
    unique = quotable_sentences(index, max_similarity)
    if len(unique) < 2:
        return unique
    document = ObjectDocumentModel([Paragraph([Sentence(s, _Words()) for s in unique])])
    summarizer = LexRankSummarizer(Stemmer("english"))
    summarizer.stop_words = get_stop_words("english")
    ranked: list[str] = []

    def keep_order(infos: list[Any]) -> list[Any]:  # sumy hands the count callable the sentences best first
        ranked.extend(str(info.sentence) for info in infos)
        return infos

    summarizer(document, keep_order)
    lifted = sorted(range(len(ranked)), key=lambda i: i - TITLE_TERM_WEIGHT * len(terms(ranked[i]) & title_terms))
    return [ranked[i] for i in lifted]


@dataclass
class ExtractiveDraft:
    reply: ComposedReply
    usage: TokenUsage = field(default_factory=TokenUsage)
    model: str | None = None
    selection: str = "ranked"  # "model" when the model's TL;DR pick was used
    prompt_length: int = 0  # characters of the pick's prompt; 0 when no model was asked


def selection_schema(candidates: int, tldr_sentences: int) -> dict[str, Any]:
    number = {"type": "integer", "enum": list(range(1, candidates + 1))}
    tldr = {"type": "array", "items": number, "minItems": tldr_sentences, "maxItems": tldr_sentences}
    return {"type": "object", "properties": {"tldr": tldr}, "required": ["tldr"], "additionalProperties": False}


class ExtractiveComposer:
    persona = "stage_b"

    def __init__(
        self, settings: ComposerSettings, llm: LLMClient | None, max_similarity: float, projects: Sequence[Project]
    ) -> None:
        self.settings = settings
        self.llm = llm
        self.projects = list(projects)
        self.max_similarity = max_similarity  # the no_repetition gate's threshold

    def plan(self, index: EvidenceIndex) -> list[str]:
        return rank_sentences(index, self.max_similarity)

    async def compose(
        self,
        prompt: PromptTemplate | None,
        evidence: Evidence,
        index: EvidenceIndex,
        themes: Sequence[ThemeStrength],
        model_optional: bool = False,
    ) -> ExtractiveDraft:
        """With a prompt and a model, the model picks the TL;DR among the best candidates; without, the ranking does.
        `model_optional`: an LLM that is unavailable or fails leaves the pick to the ranking instead of raising."""
        ranked = await asyncio.to_thread(self.plan, index)  # LexRank is pure Python: seconds on a long page
        kind = source_kind(evidence)
        draft = ExtractiveDraft(ComposedReply(tldr=[], summary=[], projects=[]))
        tldr_count, _ = sentence_budget(len(ranked), self.settings.tldr_sentences, self.settings.summary_min_sentences)
        lead = lead_sentences(ranked, index, kind)[:tldr_count]
        shown = [s for s in ranked if s not in lead][: self.settings.extractive_candidates]
        count = min(tldr_count - len(lead), len(shown))
        picked: list[str] = []
        if prompt is not None and self.llm is not None and count:
            try:
                picked = await self._pick(prompt, evidence, shown, count, draft)
            except (LLMUnavailable, openai.APIError):
                if not model_optional:
                    raise
                picked = []
        if len(picked) < count:
            picked += [s for s in shown if s not in picked][: count - len(picked)]
        elif count:
            draft.selection = "model"
        draft.reply = self._assemble(index, ranked, lead + picked, themes, kind)
        return draft

    async def _pick(
        self, prompt: PromptTemplate, evidence: Evidence, shown: list[str], count: int, draft: ExtractiveDraft
    ) -> list[str]:
        assert self.llm is not None
        messages: list[dict[str, Any]] = prompt.render(
            url=evidence.url,
            title=evidence.title,
            candidates="\n".join(f"{number}. {sentence}" for number, sentence in enumerate(shown, 1)),
            tldr_sentences=str(count),
        )
        draft.prompt_length = prompt_length(messages)
        try:
            result = await self.llm.chat(
                persona=self.persona,
                model=self.settings.stage_b_model,
                messages=messages,
                parameters=prompt.parameters,
                response_format=response_format("stage_b_selection", selection_schema(len(shown), count)),
            )
        except openai.BadRequestError:  # e.g. a content filter: the pick is optional, the ranking decides
            return []
        draft.usage += result.usage
        draft.model = result.model
        try:
            numbers = parse_json_object(result.content).get("tldr")
        except (ValueError, ValidationError, json.JSONDecodeError):
            return []
        if not isinstance(numbers, list):
            return []
        valid = [n for n in numbers if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= len(shown)]
        return [shown[n - 1] for n in dict.fromkeys(valid)][:count]

    def _assemble(
        self, index: EvidenceIndex, ranked: list[str], tldr: list[str], themes: Sequence[ThemeStrength], kind: str
    ) -> ComposedReply:
        """The TL;DR in its lead's order (what it is, its result, then the rest); the summary in the source's."""
        order = {sentence: position for position, sentence in enumerate(index.sentences)}
        rest = [s for s in ranked if s not in tldr][: self.settings.summary_max_sentences]
        summary = sorted(rest, key=order.__getitem__)
        notes = []
        if len(summary) < self.settings.summary_min_sentences:
            notes.append(SHORT_SOURCE_NOTE.format(count=len(summary)))
        return ComposedReply(
            tldr=tldr,
            summary=summary,
            projects=project_lines(themes, index, self.projects, kind),
            notes=notes,
        )
