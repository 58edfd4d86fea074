"""How strongly a link relates to each of the team's projects: the measure behind the project lines and the
earned_relevance gate.

Two measures, combined. The lexical one counts the project description's terms the evidence carries, weighted by
how distinctive they are and how salient in the evidence; it is exact and explains itself (the shared words), but
it is blind to meaning: a paper on a generative model that never says "image" shares no word with the image
generation project. The semantic one compares sentence embeddings of the link (its title and leading sentences)
with each project's description (composer.quality.semantic). A theme's strength is the larger of the two, each on
the same 0..1 scale, so a right theme that either measure sees is earned, and the lexical evidence still names
the shared words on the project line.
"""

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from functools import cache, lru_cache

from composer.projects import Project
from composer.quality.evidence import EvidenceIndex
from composer.quality.semantic import lead_sentences, similarities
from composer.quality.terms import compounds, names, terms
from composer.quality.thresholds import SEMANTIC_MARGIN, SEMANTIC_OFFSET
from technoshare_common.text import strip_markup


@dataclass(frozen=True)
class ThemeStrength:
    theme: str
    project: str
    score: float  # 0..1: the larger of the lexical strength and the semantic one
    shared: tuple[str, ...]  # the evidence's own words for the project's terms, most salient first
    lexical: float = 0.0  # the idf-weighted share of the project's terms the evidence carries, by salience
    similarity: float | None = None  # cosine of the link's and the project's embeddings; None when not measured


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
    described = terms(text) | compounds(text)
    named = {t for name in names(project.description) for t in terms(name)} & described
    return _Described(frozenset(described), frozenset((terms(project.theme) & described) | named), frozenset(named))


def theme_strengths(index: EvidenceIndex, projects: list[Project], semantic: bool = True) -> list[ThemeStrength]:
    """How strongly the evidence supports relating the link to each project, strongest first (ties by theme name,
    then project name; never by the order of the file or of the schema's enum): the larger of the lexical strength
    below and the semantic one.

    The semantic strength is the cosine of the link's and the project's embeddings less SEMANTIC_OFFSET (what
    unrelated texts score), for the projects within SEMANTIC_MARGIN of the most similar one, and 0 for the others:
    meaning alone earns the project the link is most about, not every project it is loosely near.

    The lexical strength is the share of its description's terms (its theme's words included) that the evidence
    carries, each weighted by how distinctive it is among the projects (idf) and by its salience in the evidence:
    the number of evidence sentences it is counted in, up to SALIENT_SENTENCES (a term of the title counts fully).
    A key term (a theme word, or a name the description gives, such as LoRA or Redis) is counted in every sentence
    it occurs in; any other term only in a sentence that shares at least one more term with the project, so that
    generic words ("fast", "built", "code") scattered over a long page do not add up to a topic. A name the
    description gives that is fully salient counts twice: a page about Prometheus or Redis is about the project
    that names them. Normalised by the project's own total weight (capped at 1), so a long description is not
    favoured and scores compare across projects.
    """
    key = (tuple(projects), semantic)
    if key not in index.memo:
        lexical = _theme_strengths(index, projects)
        index.memo[key] = _with_meaning(index, projects, lexical) if semantic else lexical
    return list(index.memo[key])  # type: ignore[call-overload]


def _with_meaning(index: EvidenceIndex, projects: list[Project], lexical: list[ThemeStrength]) -> list[ThemeStrength]:
    similar = similarities(strip_markup(index.title), lead_sentences(index.lead), projects)
    if not similar:
        return lexical
    best = max(similar.values())
    combined = []
    for strength in lexical:
        cosine = similar[strength.project]
        meaning = cosine - SEMANTIC_OFFSET if cosine >= best - SEMANTIC_MARGIN else 0.0
        score = round(max(strength.lexical, meaning, 0.0), 4)
        combined.append(dataclasses.replace(strength, score=score, similarity=cosine))
    return sorted(combined, key=lambda s: (-s.score, s.theme, s.project))


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
                lexical=round(min(1.0, sum(weights.values()) / total), 4),
            )
        )
    return sorted(strengths, key=lambda s: (-s.score, s.theme, s.project))


@cache
def projects_index(projects: tuple[Project, ...]) -> EvidenceIndex:
    """The team's project descriptions as an index: what a sentence that pads with the prompt's context matches."""
    return EvidenceIndex([f"{p.theme}: {p.name}. {p.description}" for p in projects])


# A theme is offered only when it is at least this share of the strongest one: a link about a web framework is
# not "related" to the image-generation project because both mention "fast" and "features".
RELATIVE_THEME_STRENGTH = 0.5


def earned_themes(
    index: EvidenceIndex, projects: list[Project], floor: float, semantic: bool = True
) -> list[ThemeStrength]:
    """The themes a reply may name, strongest first: over the earned_relevance gate's floor and near the best."""
    strengths = [t for t in theme_strengths(index, projects, semantic) if t.score >= floor]
    if not strengths:
        return []
    return [t for t in strengths if t.score >= RELATIVE_THEME_STRENGTH * strengths[0].score]
