"""The calibration report: the score distributions the content gates' thresholds (composer.quality.thresholds)
are chosen from, on the labelled replies of data/eval_replies.json. `technoshare-calibrate` prints it.
"""

import json
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from composer.projects import Project, load_projects
from composer.quality.content import ContentGateConfig
from composer.quality.evidence import EvidenceIndex
from composer.quality.terms import reply_sentences, similarity
from composer.quality.themes import projects_index, theme_strengths
from technoshare_common.schemas import Evidence
from technoshare_common.settings import REPO_DATA_DIR


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
    good_conflicts: list[float] = []  # 1.0 per good sentence that disagrees with its evidence
    disagreeing: list[float] = []  # 1.0 per bad reply whose words are the evidence's but whose sense is not
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
            good_conflicts += [float(bool(sup.conflicts)) for sup in supports.values()]
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
            invented_caught += sum(1 for s in invented if not index.support(s).supported(min_support))
            lowest = min(sup.score for sup in supports.values())
            if lowest < min_support or any(sup.unknown_names for sup in supports.values()):
                bad_lowest.append(lowest)
            else:  # every word is the evidence's: only agreement can catch it
                disagreeing.append(float(any(sup.conflicts for sup in supports.values())))
        if "no_repetition" in fails:
            bad_similar.append(max(pairs, default=0.0))
        if "no_padding" in fails:  # the padding sentences are an entry's invented ones (a copy of the TL;DR is not)
            padded = entry.get("invented", [])
            bad_padding += [padding_index.support(s).score - index.support(s).score for s in padded]
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
        _row(
            "good sentences that disagree with their evidence",
            good_conflicts,
            sum(v > 0 for v in good_conflicts),
        ),
        _row(
            "bad replies that must fail grounded with supported words: disagreeing (1)",
            disagreeing,
            sum(v > 0 for v in disagreeing),
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
        f"caught by support, an unknown number or name, or agreement: {invented_caught} of {invented_total}."
    )
    return "\n".join(rows) + summary


def main() -> None:
    """`technoshare-calibrate`: the calibration table of data/eval_replies.json at the default thresholds."""
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
        # The dev split's: the holdout split is the evaluation report's alone.
        expected_themes={
            example_id: e["expected_theme"]
            for example_id, e in examples.items()
            if e.get("split", "dev") == "dev" and e["expected_theme"]
        },
    )
    print(report)


if __name__ == "__main__":
    main()
