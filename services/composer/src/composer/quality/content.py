"""Content gates: what the reply says, not how it is laid out.

The layout gates (composer.quality.layout) pass a reply that invents facts, repeats itself or leaks HTML. These
judge its content against the evidence and the team's projects, and each failure's detail is written for the
repair prompt: it names the offending sentences and says what to do instead.

- grounded: every TL;DR and summary sentence is supported by one or two evidence sentences, and names no number
  or name that the evidence does not (composer.quality.evidence).
- no_repetition: no two sentences of the reply are near-duplicates, and no sentence loops a phrase.
- no_markup: no HTML, entities, Slack mentions or link syntax, code fences, JSON or bracket debris, Markdown links,
  broken URLs or glued words.
- language: the reply is in REPLY_LANGUAGE (py3langid) and every letter is in that language's script.
- no_padding: the summary does not repeat the TL;DR, and no sentence is the team's project descriptions (the
  prompt's context) passed off as the link's content.
- standalone: every TL;DR and summary sentence reads on its own: no pointer to a figure or "below", no opening
  "This…" or "It…" whose antecedent the reply lacks, no list fragment, no colon at its end
  (composer.quality.standalone).
- earned_relevance: every project line's theme is one the evidence supports (composer.quality.themes),
  and the lines are ordered strongest first.
- project_grounded: every project line is supported by the evidence and the project's description together, the
  same measure as grounded: it says what the project does and what in the link touches it, and invents neither.
"""

import itertools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from composer.projects import Project
from composer.quality import semantic, thresholds
from composer.quality.evidence import EvidenceIndex
from composer.quality.standalone import standalone_problem
from composer.quality.terms import (
    compounds,
    names,
    normalized_words,
    reply_sentences,
    similarity,
    term,
    terms,
    vocabulary_words,
    word_similarity,
)
from composer.quality.themes import ThemeStrength, projects_index, theme_strengths
from composer.settings import CONTENT_GATES, LANGUAGE_SCRIPTS
from technoshare_common.schemas import ComposedReply, GateResult
from technoshare_common.text import strip_markup

if TYPE_CHECKING:
    from composer.settings import ComposerSettings

QUOTE_CHARS = 90  # a sentence quoted in a detail is cut here
MAX_LISTED = 4  # sentences listed per problem in a detail


@dataclass(frozen=True)
class ContentGateConfig:
    enabled: frozenset[str] = frozenset(CONTENT_GATES)
    min_support: float = thresholds.MIN_SUPPORT
    max_similarity: float = thresholds.MAX_SIMILARITY
    language: str = "en"
    min_theme_strength: float = thresholds.MIN_THEME_STRENGTH
    # earned_relevance: a line may follow a stronger one by at most this much (strengths within it are a tie).
    theme_order_tolerance: float = 0.02
    # no_markup: an all-letter token this long that the evidence does not contain is words glued together.
    glued_word_chars: int = 17
    # no_padding: a sentence is the projects' context when it matches their descriptions by this much more than
    # the evidence.
    padding_margin: float = thresholds.PADDING_MARGIN

    def __post_init__(self) -> None:
        unknown = sorted(self.enabled - set(CONTENT_GATES))
        if unknown:
            raise ValueError(f"unknown content gate(s) {unknown}; the content gates are {', '.join(CONTENT_GATES)}")
        if self.language not in LANGUAGE_SCRIPTS:
            raise ValueError(f"unsupported reply language {self.language!r}")

    @classmethod
    def from_settings(cls, settings: "ComposerSettings") -> "ContentGateConfig":
        return cls(
            enabled=frozenset(settings.content_gates),
            min_support=settings.gate_min_support,
            max_similarity=settings.gate_max_similarity,
            language=settings.reply_language,
            min_theme_strength=settings.gate_min_theme_strength,
        )


@dataclass(frozen=True)
class GateContext:
    """What the content gates judge a reply against: the evidence, and the team's projects."""

    evidence: EvidenceIndex
    projects: list[Project]


def _quote(sentence: str) -> str:
    sentence = " ".join(sentence.split())
    return f'"{sentence[:QUOTE_CHARS]}…"' if len(sentence) > QUOTE_CHARS else f'"{sentence}"'


def _listed(items: Sequence[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


# --- grounded ----------------------------------------------------------------------------------


def _grounded(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> GateResult:
    sentences = reply_sentences(reply.tldr) + reply_sentences(reply.summary)
    supports = [(s, context.evidence.support(s)) for s in sentences]
    weak = [(s, sup) for s, sup in supports if sup.score < config.min_support]
    named = [(s, sup) for s, sup in supports if sup.unknown_names]
    disagreeing = [(s, sup) for s, sup in supports if sup.conflicts and sup.score >= config.min_support]
    problems = []
    if weak:
        listed = [
            f"{_quote(s)} (support {sup.score:.2f}; not in the evidence: {', '.join(sup.unsupported_terms[:6])})"
            for s, sup in weak
        ]
        problems.append("say only what the evidence says; these sentences have no support in it: " + _listed(listed))
    if named:
        listed = [f"{', '.join(sup.unknown_names)} in {_quote(s)}" for s, sup in named]
        problems.append(
            "these numbers or names occur nowhere in the evidence, so remove them or use the evidence's own: "
            + _listed(listed)
        )
    if disagreeing:
        listed = [f"{_quote(s)}: {'; '.join(sup.conflicts)}" for s, sup in disagreeing]
        problems.append("these sentences use the evidence's words but say something else: " + _listed(listed))
    if problems:
        return GateResult(name="grounded", passed=False, detail=" ".join(problems))
    lowest = min((sup.score for _, sup in supports), default=1.0)
    return GateResult(
        name="grounded",
        passed=True,
        detail=f"all {len(sentences)} TL;DR and summary sentences are supported by the evidence and agree with it "
        f"(lowest support {lowest:.2f}, at least {config.min_support:.2f} needed)",
    )


# --- no_repetition -----------------------------------------------------------------------------

LOOP_NGRAM = 4  # a phrase of this many words said twice in one sentence is a loop
LOOP_RUN = 3  # ... as is any phrase repeated this many times in a row


def _loops(sentence: str) -> str | None:
    """The phrase a sentence repeats, if it loops."""
    words = normalized_words(sentence).split()
    for size in range(1, 6):  # "the the the", "of the model of the model of the model"
        for start in range(len(words) - size * LOOP_RUN + 1):
            phrase = words[start : start + size]
            if all(words[start + k * size : start + (k + 1) * size] == phrase for k in range(1, LOOP_RUN)):
                return " ".join(phrase)
    seen: set[tuple[str, ...]] = set()
    for start in range(len(words) - LOOP_NGRAM + 1):
        gram = tuple(words[start : start + LOOP_NGRAM])
        if gram in seen:
            return " ".join(gram)
        seen.add(gram)
    return None


def _repeats(sentences: Sequence[str], threshold: float) -> list[int]:
    """The positions of the sentences that near-duplicate an earlier one."""
    words = [normalized_words(s) for s in sentences]
    return [j for j in range(len(sentences)) if any(word_similarity(words[i], words[j]) >= threshold for i in range(j))]


def _no_repetition(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> GateResult:
    sentences = (
        reply_sentences(reply.tldr)
        + reply_sentences(reply.summary)
        + reply_sentences([p.relevance for p in reply.projects])
    )
    problems = []
    repeats = _repeats(sentences, config.max_similarity)
    if repeats:
        repeated = list(dict.fromkeys(sentences[j] for j in repeats))
        problems.append(
            f"say each thing once; {len(repeats)} sentences repeat an earlier one: "
            + _listed([_quote(s) for s in repeated])
        )
    loops = [
        (s, phrase)
        for s in dict.fromkeys(sentences)
        if (phrase := _loops(s)) and not context.evidence.contains_verbatim(s)
    ]
    if loops:
        problems.append(
            "these sentences loop a phrase; write each once: "
            + _listed([f'{_quote(s)} (repeats "{phrase}")' for s, phrase in loops])
        )
    if problems:
        return GateResult(name="no_repetition", passed=False, detail=" ".join(problems))
    return GateResult(
        name="no_repetition",
        passed=True,
        detail=f"no two of the reply's {len(sentences)} sentences are alike (similarity under "
        f"{config.max_similarity:.2f}) and none loops a phrase",
    )


# --- no_markup ---------------------------------------------------------------------------------

_ENTITY_NAMES = "nbsp|amp|lt|gt|quot|apos|mdash|ndash|hellip|lsquo|rsquo|ldquo|rdquo|copy|reg|trade|shy|zwj|zwnj"
MARKUP_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"</?[A-Za-z][^<>]*>|</?(?:a|b|i|p|br|hr|em|li|ul|ol|div|span|img|code|pre|strong|h[1-6])\b", re.I),
        "HTML tags",
    ),
    (
        re.compile(rf"&(?:#x?[0-9A-Fa-f]*;?|[A-Za-z][A-Za-z0-9]{{1,7}};|(?:{_ENTITY_NAMES})(?![A-Za-z]))", re.I),
        "HTML entities",
    ),
    (re.compile(r"<[!@#][^>]*>|(?<![\w.])@(?:channel|here|everyone)\b", re.I), "Slack mentions"),
    (re.compile(r"```|~~~"), "code fences"),
    (re.compile(r"\[[^\]\n]*\]\(|\]\("), "Markdown links (write the words, not [text](url))"),
    (re.compile(r"\bhttps?//|\bhttps?:/(?!/)|\bhttps?://(?=\s|$|[)\]])|\bhttps?:\s|\b\w+<br\b", re.I), "broken URLs"),
    (re.compile(r"[{}\[\]]|\\[nrtu\"\\]|\"\w+\"\s*:"), "JSON or bracket debris"),
)
_LETTERS = re.compile(r"[^\W\d_]+")


def _markup_problems(sentence: str, context: GateContext, config: ContentGateConfig) -> list[str]:
    found = []
    for pattern, what in MARKUP_PATTERNS:
        match = pattern.search(sentence)
        if match:
            found.append(f"{what} ({match.group().strip()[:20]!r})")
    glued = [
        word
        for word in _LETTERS.findall(sentence)
        if len(word) >= config.glued_word_chars and not context.evidence.known(word)
    ]
    if glued:
        found.append(f"words glued together ({', '.join(glued[:3])})")
    return found


def _no_markup(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> GateResult:
    fields = [("TL;DR", s) for s in reply.tldr] + [("summary", s) for s in reply.summary]
    fields += [("project line", p.relevance) for p in reply.projects]
    bad = [(where, s, found) for where, s in fields if (found := _markup_problems(s, context, config))]
    if bad:
        listed = [f"{where} {_quote(s)}: {', '.join(found)}" for where, s, found in bad]
        return GateResult(
            name="no_markup",
            passed=False,
            detail="write plain sentences: no HTML, entities, code, JSON, brackets, Markdown links or URLs, and a "
            "space between words; these have markup: " + _listed(listed),
        )
    return GateResult(name="no_markup", passed=True, detail="plain sentences: no markup, broken URLs or glued words")


# --- language ----------------------------------------------------------------------------------

# py3langid chooses among these (and the configured language): the languages a reply could drift into. Its full
# set of 97 includes languages that short technical English is sometimes mistaken for (Latin, Tagalog, …).
CANDIDATE_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "ru", "uk", "zh", "ja", "ko", "tr")
# Letters allowed outside the language's script when the evidence has them: notation such as Greek letters, the
# micro sign or the mathematical alphanumeric symbols.
NOTATION_SCRIPTS = ("GREEK", "MATHEMATICAL", "MICRO")


@cache
def _identifier(language: str) -> LanguageIdentifier:
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(sorted({*CANDIDATE_LANGUAGES, language}))
    return identifier


def warm_up(config: "ContentGateConfig") -> None:
    """Loads the language model (about 0.7 s) and the embedding model (about 0.3 s) before the first job rather
    than inside it."""
    _identifier(config.language)
    semantic.encoder()


def _script(char: str) -> str:
    return unicodedata.name(char, "UNKNOWN").split(" ")[0].split("-")[0]


def _foreign_words(text: str, language: str, evidence: EvidenceIndex) -> list[str]:
    scripts = LANGUAGE_SCRIPTS[language]
    out = []
    for word in text.split():
        for char in word:
            if not unicodedata.category(char).startswith("L"):
                continue
            script = _script(char)
            if script in scripts or (script in NOTATION_SCRIPTS and char in evidence.characters):
                continue
            out.append(word)
            break
    return list(dict.fromkeys(out))


SENTENCE_LANGUAGE_CONFIDENCE = 0.9  # a single sentence is judged foreign only when py3langid is this sure
SENTENCE_LANGUAGE_WORDS = 5  # ... and it has this many words besides names and numbers


def _without_names(text: str) -> str:
    """Names and numbers say little about the language and mislead the classifier; it judges the other words."""
    name_set = set(names(text))
    return " ".join(w for w in text.split() if w.strip(".,;:!?()'\"") not in name_set)


def _language(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> GateResult:
    sentences = [strip_markup(s) for s in (*reply.tldr, *reply.summary, *(p.relevance for p in reply.projects))]
    text = " ".join(sentences)
    foreign = _foreign_words(text, config.language, context.evidence)
    identifier = _identifier(config.language)
    detected, confidence = identifier.classify(_without_names(text) or text)
    problems = []
    if detected != config.language:
        problems.append(f"the reply reads as {detected!r} (confidence {confidence:.2f}), not {config.language!r}")
    else:
        others = []
        for sentence in sentences:
            prose = _without_names(sentence)
            if len(prose.split()) < SENTENCE_LANGUAGE_WORDS:
                continue
            language, sure = identifier.classify(prose)
            if language != config.language and sure >= SENTENCE_LANGUAGE_CONFIDENCE:
                others.append(f"{_quote(sentence)} ({language!r})")
        if others:
            problems.append("these sentences are in another language: " + _listed(others))
    if foreign:
        problems.append(
            f"these words are not written in the {'/'.join(LANGUAGE_SCRIPTS[config.language]).lower()} script: "
            + ", ".join(foreign[:8])
        )
    if problems:
        return GateResult(
            name="language",
            passed=False,
            detail=f"write the whole reply in {config.language!r}, with no words from other languages; "
            + "; ".join(problems),
        )
    return GateResult(
        name="language", passed=True, detail=f"the reply is in {config.language!r} (confidence {confidence:.2f})"
    )


# --- no_padding --------------------------------------------------------------------------------


def _no_padding(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> GateResult:
    tldr = reply_sentences(reply.tldr)
    summary = reply_sentences(reply.summary)
    problems = []
    copies = [s for s in summary if any(similarity(s, t) >= config.max_similarity for t in tldr)]
    if copies:
        problems.append(
            "the summary must add to the TL;DR, not repeat it; these summary sentences repeat a TL;DR sentence: "
            + _listed([_quote(s) for s in copies])
        )
    padded = []
    if context.projects:
        padding_index = projects_index(tuple(context.projects))
        project_names = {p.name for p in context.projects}
        for sentence in tldr + summary:
            # A project named as such (Atlas, Forge), unless the evidence names it too (MongoDB Atlas).
            named = [w for w in re.findall(r"\w+", sentence) if w in project_names and not context.evidence.known(w)]
            from_projects = padding_index.support(sentence)
            from_evidence = context.evidence.support(sentence)
            if named or (
                from_projects.score >= config.min_support
                and from_projects.score > from_evidence.score + config.padding_margin
            ):
                padded.append(
                    f"{_quote(sentence)} (evidence {from_evidence.score:.2f}, "
                    f"project descriptions {from_projects.score:.2f})"
                )
    if padded:
        problems.append(
            "the TL;DR and summary are about the link: leave the team's projects to the project lines and do not "
            "describe them; these sentences restate the project descriptions, not the evidence: " + _listed(padded)
        )
    if problems:
        return GateResult(name="no_padding", passed=False, detail=" ".join(problems))
    return GateResult(
        name="no_padding",
        passed=True,
        detail="the summary adds to the TL;DR, and every sentence is about the link, not the team's projects",
    )


# --- standalone --------------------------------------------------------------------------------


def _standalone(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> GateResult:
    problems = []
    sentences = reply_sentences(reply.tldr) + reply_sentences(reply.summary)  # the TL;DR is the summary's context
    for position, sentence in enumerate(sentences):
        why = standalone_problem(sentence, sentences[:position], context.evidence.listed)
        if why:
            problems.append(f"{_quote(sentence)} {why}")
    if problems:
        return GateResult(
            name="standalone",
            passed=False,
            detail="every sentence must read on its own, in the source's order: name the subject instead of "
            '"This" or "It", point at no figure, table or text "below", and write no list fragments; '
            + _listed(problems),
        )
    return GateResult(
        name="standalone",
        passed=True,
        detail="every TL;DR and summary sentence reads on its own: no pointers, dangling openers or fragments",
    )


# --- earned_relevance --------------------------------------------------------------------------


def _theme_scores(context: GateContext) -> tuple[list[ThemeStrength], dict[str, float]]:
    ranked = theme_strengths(context.evidence, context.projects)
    best: dict[str, float] = {}
    for strength in ranked:
        best.setdefault(strength.theme, strength.score)
    return ranked, best


def _earned_relevance(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> GateResult:
    ranked, best = _theme_scores(context)
    earned = [s for s in ranked if s.score >= config.min_theme_strength]
    supported = (
        "; ".join(f"{s.theme} ({s.score:.2f}: {', '.join(s.shared[:4])})" for s in earned[:4])
        or f"none reaches {config.min_theme_strength:.2f}"
    )
    themes = [p.theme for p in reply.projects]
    unearned = [t for t in dict.fromkeys(themes) if best.get(t, 0.0) < config.min_theme_strength]
    misordered = [
        (a, b)
        for a, b in itertools.pairwise(themes)
        if best.get(b, 0.0) > best.get(a, 0.0) + config.theme_order_tolerance
    ]
    problems = []
    if unearned:
        problems.append(
            "relate the link only to projects the evidence is about; the evidence does not support "
            + ", ".join(f"{t} ({best.get(t, 0.0):.2f})" for t in unearned)
        )
    if misordered:
        problems.append(
            "order the project lines strongest first; "
            + ", ".join(f"{b} ({best[b]:.2f}) is stronger than {a} ({best.get(a, 0.0):.2f})" for a, b in misordered)
        )
    if problems:
        return GateResult(
            name="earned_relevance",
            passed=False,
            detail="; ".join(problems) + f". The themes the evidence supports, strongest first: {supported}",
        )
    return GateResult(
        name="earned_relevance",
        passed=True,
        detail=f"every project line's theme is supported by the evidence, strongest first ({supported})",
    )


# --- project_grounded --------------------------------------------------------------------------


def _project_support(sentence: str, project: Project, context: GateContext) -> tuple[float, list[str], list[str]]:
    """The share of the line's terms found in its best evidence or in the project's description; the words found
    in neither; the names and numbers known to neither."""
    described_text = f"{project.name}. {project.theme}. {project.description}"
    described = terms(described_text) | compounds(described_text)
    support = context.evidence.support(sentence)
    total = len(terms(sentence))
    missing = [w for w in support.unsupported_terms if term(w.lower()) not in described]
    vocabulary = vocabulary_words(described_text)
    unknown = [n for n in support.unknown_names if n.lower() not in vocabulary]
    score = 1.0 if not total else round(1 - len(missing) / total, 4)
    return score, missing, unknown


def _broken_words(sentence: str, texts: str) -> list[str]:
    """Words the two texts have only inside a longer hyphenated word: "fine" of "fine-tuning" is a stem, not a
    word the line may use."""
    broken = []
    for word in dict.fromkeys(re.findall(r"(?<![\w-])[a-z]{3,}(?![\w'\u2019-])", sentence)):
        whole = re.search(rf"(?<![\w-]){word}(?!-)", texts, re.IGNORECASE)  # a word, or one inflected (training)
        if not whole and re.search(rf"\w-{word}\b|\b{word}-\w", texts, re.IGNORECASE):
            broken.append(word)
    return broken


def _project_grounded(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> GateResult:
    by_theme = {p.theme: p for p in reversed(context.projects)}  # the first project of a theme
    problems = []
    lowest = 1.0
    for line in reply.projects:
        project = by_theme.get(line.theme)
        if project is None:
            continue  # an unknown theme is schema_validity's to refuse
        for sentence in reply_sentences([line.relevance]):
            score, missing, unknown = _project_support(sentence, project, context)
            lowest = min(lowest, score)
            broken = _broken_words(sentence, f"{context.evidence.text} {project.description}")
            if broken:
                problems.append(f"{_quote(sentence)} uses parts of words, not words: {', '.join(broken)}")
            elif score < config.min_support:
                problems.append(f"{_quote(sentence)} (support {score:.2f}; in neither: {', '.join(missing[:6])})")
            elif unknown:
                problems.append(f"{_quote(sentence)} names {', '.join(unknown)}, which neither text has")
    if problems:
        return GateResult(
            name="project_grounded",
            passed=False,
            detail="a project line says what the project does, from its description, and what in the link touches "
            "it, from the evidence, and nothing else; these lines are supported by neither: " + _listed(problems),
        )
    return GateResult(
        name="project_grounded",
        passed=True,
        detail=f"every project line is supported by the evidence and the project's description (lowest {lowest:.2f})",
    )


GATES: dict[str, Callable[[ComposedReply, GateContext, ContentGateConfig], GateResult]] = {
    "grounded": _grounded,
    "no_repetition": _no_repetition,
    "no_markup": _no_markup,
    "language": _language,
    "no_padding": _no_padding,
    "standalone": _standalone,
    "earned_relevance": _earned_relevance,
    "project_grounded": _project_grounded,
}
assert tuple(GATES) == CONTENT_GATES


def check_content(reply: ComposedReply, context: GateContext, config: ContentGateConfig) -> list[GateResult]:
    """One result per enabled content gate, in CONTENT_GATES order; a disabled gate is not reported."""
    return [GATES[name](reply, context, config) for name in CONTENT_GATES if name in config.enabled]
