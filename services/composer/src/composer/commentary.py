"""Commentary made by code from the source's own words: which sentences lead the TL;DR, and the project lines.

A teammate's TL;DR says what the thing is first (what a paper proposes, what a repository does, a post's point),
then its main result with the number when the source has one. A teammate's project line says what the project does
and what in the link touches it: "Forge works on LoRA and QLoRA adapters; this paper covers LoRA and low-rank
adaptation." The project half comes from the project's description, the link half from the words the source shares
with it as the source writes them, so the project_grounded gate finds every word in one of the two texts.
"""

import re
from collections import Counter
from collections.abc import Sequence

from composer.projects import Project
from composer.quality.evidence import EvidenceIndex
from composer.quality.terms import terms
from composer.quality.themes import ThemeStrength
from technoshare_common.schemas import Evidence, ProjectLink
from technoshare_common.text import prose_words, strip_markup

MAX_PROJECT_LINES = 3
SHOWN_TERM_CHARS = 4  # shorter shared words ("run", "api") say little on a project line
LEAD_WINDOW = 5  # a post's point is among its first sentences

KINDS = {"ArxivAdapter": "paper", "GitHubAdapter": "repository"}

_PROPOSES = re.compile(
    r"\b(?:we|this (?:paper|work|report)|in this (?:paper|work))\b[^.]{0,60}?"
    r"\b(?:propose|present|introduce|develop|describe|release|show|study|demonstrate)",
    re.IGNORECASE,
)
_IS_A = re.compile(r"\b(?:is|are)\s+(?:a|an|the|your)\b", re.IGNORECASE)
# A result: a comparison ("outperforms", "10x faster") or a measured gain ("by 3 times", "40%").
_RESULT = re.compile(
    r"\b(?:outperform\w*|improv\w*|faster|slower|speed-?ups?|reduc\w*|achiev\w*|state-of-the-art|fewer|"
    r"better than|on-par|matches)\b|\d(?:[\d,.]*)\s*(?:%|x\b|\u00d7|times\b)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d")


def source_kind(evidence: Evidence) -> str:
    """What a reply calls the link: a paper, a repository, or a page."""
    return KINDS.get(evidence.adapter_name, "page")


def _what_it_is(ranked: Sequence[str], index: EvidenceIndex, kind: str) -> str | None:
    """The earliest sentence saying what a paper proposes or what a repository is; a page's opening sentence that
    shares most with its title."""
    order = {sentence: position for position, sentence in enumerate(index.sentences)}
    reading = sorted(ranked, key=order.__getitem__)
    if kind == "paper":
        return next((s for s in reading if _PROPOSES.search(s)), None)
    if kind == "repository":
        return next((s for s in reading if _IS_A.search(s) and terms(s) & index.title_terms), None)
    opening = reading[:LEAD_WINDOW]
    if not opening:
        return None
    return max(opening, key=lambda s: (len(terms(s) & index.title_terms), -order[s]))


def lead_sentences(ranked: Sequence[str], index: EvidenceIndex, kind: str) -> list[str]:
    """The TL;DR's fixed lead, in order: what the thing is, then its main result with a number, where the ranked
    quotable sentences have them."""
    lead = []
    what = _what_it_is(ranked, index, kind)
    if what is not None:
        lead.append(what)
    result = next((s for s in ranked if s not in lead and _NUMBER.search(s) and _RESULT.search(s)), None)
    if result is not None:
        lead.append(result)
    return lead


def _as_written(word: str, text: str) -> str | None:
    """The whole word as the source writes it (LoRA, PyTorch, JAX): in lower case when the source ever writes it
    so (a capital of a title or a sentence's start is no name), else its most frequent form; None when the source
    has it only inside a longer word ("fine" of "fine-tuning")."""
    found = Counter(re.findall(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags=re.IGNORECASE))
    if not found:
        return None
    lower = [form for form in found if form.islower()]
    return lower[0] if lower else found.most_common(1)[0][0]


def _phrases(words: list[str], text: str) -> list[str]:
    """Shared words the source writes side by side read as one phrase: "data structures", "fine-tuning"."""
    merged: list[str] = []
    for word in words:
        pattern = rf"\b{re.escape(merged[-1])}([\s-]+){re.escape(word)}\b" if merged else ""
        joins = re.findall(pattern, text, re.IGNORECASE) if pattern else []
        if len(joins) >= 2:  # a phrase of the source's, not two words that met once
            merged[-1] = f"{merged[-1]}{'-' if joins[0].strip() else ' '}{word}"
        else:
            merged.append(word)
    return merged


def _listing(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" and {words[-1]}"


def _split_top_level(text: str) -> list[str]:
    """Comma- and "and"-separated parts outside brackets: "LoRA and QLoRA adapters, preference alignment (DPO,
    RLHF)" gives "LoRA", "QLoRA adapters", "preference alignment (DPO, RLHF)"; an "and" joining two words of one
    noun phrase splits too, which the clause choice below undoes by preferring longer overlaps."""
    parts, depth, current = [], 0, ""
    for piece in re.split(r"(\(|\)|,)", text):
        if piece == "(":
            depth += 1
        elif piece == ")":
            depth -= 1
        if piece == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += piece
    parts.append(current)
    return [p.strip(" .") for p in parts if p.strip(" .")]


def description_clauses(project: Project) -> list[str]:
    """What the project does, as noun phrases of its description, in the team's voice made third person."""
    head, _, tail = project.description.partition(":")
    clauses = [head.strip(" ."), *_split_top_level(tail)]
    return [re.sub(r"\b[Oo]ur\b", "the team's", c) for c in clauses if c] or [project.theme]


def _lowercase_first(clause: str, text: str) -> str:
    """A description's clause opens a sentence; inside a line it keeps its capital only for a name (Kubernetes,
    Python: words the texts never write in lower case, or capitalise mid-sentence)."""
    first = clause.split(" ", 1)[0]
    if first.lower() in ("the", "a", "an"):
        return first.lower() + clause[len(first) :]
    common = re.search(rf"\b{re.escape(first.lower())}\b", text)
    named = re.search(rf"[a-z,] {re.escape(first)}\b", text)
    if first[1:].islower() and common and not named:
        return first.lower() + clause[len(first) :]
    return clause


def _best_clause(project: Project, shared: set[str]) -> str:
    clauses = description_clauses(project)
    scored = [(len(terms(c) & shared), -position, c) for position, c in enumerate(clauses)]
    best = max(scored)
    return best[2] if best[0] else clauses[0]


def _plain_title(title: str) -> str:
    """A title as words a sentence can carry: no markup, brackets or code (a README's title may hold HTML)."""
    words = " ".join(re.sub(r"[\[\]{}<>|`*_#]", " ", strip_markup(title)).split()).strip(" :;,.-")
    return words if prose_words(words) else "a related topic"


def project_line(project: Project, strength: ThemeStrength, index: EvidenceIndex, kind: str) -> str:
    """One teammate's line: what the project does, and what in the source touches it (or what the source is about,
    when only the meaning relates them)."""
    text = " ".join(index.sentences)
    written = [w for w in (_as_written(w, text) for w in strength.shared) if w is not None]
    shown = [w for w in written if len(w) >= SHOWN_TERM_CHARS or not w.islower()]
    words = _phrases(list(dict.fromkeys(shown[:3])), text)
    clause = _lowercase_first(_best_clause(project, terms(" ".join(words))), f"{project.description} {text}")
    if words:
        return f"{project.name} works on {clause}; this {kind} covers {_listing(words)}."
    return f"{project.name} works on {clause}; this {kind} is about {_plain_title(index.title)}."


def project_lines(
    themes: Sequence[ThemeStrength], index: EvidenceIndex, projects: Sequence[Project], kind: str
) -> list[ProjectLink]:
    """One line per earned theme, strongest first, at most MAX_PROJECT_LINES."""
    by_name = {p.name: p for p in projects}
    lines: list[ProjectLink] = []
    for strength in themes[:MAX_PROJECT_LINES]:
        project = by_name.get(strength.project)
        if project is not None:
            lines.append(ProjectLink(theme=strength.theme, relevance=project_line(project, strength, index, kind)))
    return lines
