"""Content gates: what the reply says, judged against the pinned evidence of data/eval_dataset.json.

data/eval_replies.json holds labelled recorded replies: a known-good reply per example and known-bad ones of every
kind, each with the gates it must fail. Every gate is shown failing a bad reply and passing the good one; the
thresholds are the ones calibrated on that file (evaluation.calibration.grounding_report).
"""

import asyncio
import json
from functools import cache
from typing import Any

import pytest

from composer.extractive import ExtractiveComposer, quotable
from composer.projects import load_projects
from composer.quality import thresholds
from composer.quality.content import CONTENT_GATES, ContentGateConfig, GateContext, _identifier, check_content
from composer.quality.evidence import EvidenceIndex
from composer.quality.terms import terms
from composer.quality.themes import earned_themes, theme_strengths
from composer.settings import ComposerSettings
from evaluation.calibration import grounding_report
from technoshare_common.schemas import ComposedReply, Evidence, GateResult
from technoshare_common.settings import REPO_DATA_DIR
from technoshare_common.text import evidence_sentences

EXAMPLES = {e["id"]: e for e in json.loads((REPO_DATA_DIR / "eval_dataset.json").read_text())["examples"]}
ENTRIES: list[dict[str, Any]] = json.loads((REPO_DATA_DIR / "eval_replies.json").read_text())["entries"]
PROJECTS = load_projects(REPO_DATA_DIR / "projects.yaml")
CONFIG = ContentGateConfig()
GOOD = {e["example_id"]: e for e in reversed(ENTRIES) if e["label"] == "good"}  # the first good entry per example


def evidence(example_id: str) -> Evidence:
    return Evidence.model_validate(EXAMPLES[example_id]["evidence"])


@cache
def index(example_id: str) -> EvidenceIndex:
    return EvidenceIndex.from_evidence(evidence(example_id))


def gates(entry: dict[str, Any], config: ContentGateConfig = CONFIG) -> dict[str, GateResult]:
    reply = ComposedReply.model_validate(entry["reply"])
    return {g.name: g for g in check_content(reply, GateContext(index(entry["example_id"]), PROJECTS), config)}


def bad(note_starts: str, example_id: str | None = None) -> dict[str, Any]:
    [entry] = [
        e
        for e in ENTRIES
        if e["label"] == "bad" and e["note"].startswith(note_starts) and example_id in (None, e["example_id"])
    ]
    return entry


def test_the_labelled_replies_cover_every_gate_and_kind_of_source() -> None:
    assert len(GOOD) >= 10
    assert {i.split("-")[0] for i in GOOD} == {"arxiv", "github", "web"}
    assert {gate for e in ENTRIES for gate in e["fails"]} == set(CONTENT_GATES)
    assert all(e["example_id"] in EXAMPLES and e["label"] in ("good", "bad") for e in ENTRIES)
    assert all(e["fails"] == [] for e in ENTRIES if e["label"] == "good")
    assert all(e["example_id"] in GOOD for e in ENTRIES)


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["label"] == "good"], ids=lambda e: e["example_id"])
def test_every_good_reply_passes_every_content_gate(entry: dict[str, Any]) -> None:
    results = gates(entry)
    assert list(results) == list(CONTENT_GATES)
    assert [g.detail for g in results.values() if not g.passed] == []


@pytest.mark.parametrize(
    "entry",
    [e for e in ENTRIES if e["label"] == "bad"],
    ids=lambda e: f"{e['example_id']}:{'+'.join(e['fails'])}",
)
def test_every_bad_reply_fails_the_gates_it_lists(entry: dict[str, Any]) -> None:
    failed = {name for name, g in gates(entry).items() if not g.passed}
    assert set(entry["fails"]) <= failed, entry["note"]


# --- one gate at a time: a bad reply fails it, the good reply of the same link passes it ---------------------------


def assert_fails_only_the_bad(gate: str, entry: dict[str, Any]) -> str:
    only = ContentGateConfig(enabled=frozenset({gate}))
    [bad_result] = gates(entry, only).values()
    [good_result] = gates(GOOD[entry["example_id"]], only).values()
    assert bad_result.name == gate and not bad_result.passed
    assert good_result.passed, good_result.detail
    return bad_result.detail


def test_grounded_fails_invented_facts_and_names_them() -> None:
    detail = assert_fails_only_the_bad("grounded", bad("Recorded (bundled model, first TL;DR"))
    assert detail.startswith("say only what the evidence says; these sentences have no support in it:")
    assert '"The LoRa project is a new open-source software project released by Google' in detail
    assert "Google, October, Lambda-T" in detail


def test_grounded_fails_a_reply_about_another_document() -> None:
    detail = assert_fails_only_the_bad("grounded", bad("A reply describing another document: recorded"))
    assert "linux kernel source tree" in detail


def test_grounded_fails_invented_numbers_in_otherwise_faithful_prose() -> None:
    detail = assert_fails_only_the_bad("grounded", bad("Invented numbers and names", "arxiv-2305-14314"))
    assert "175B" in detail and "24GB" in detail and "Yann" in detail


def test_no_repetition_fails_a_summary_that_repeats_one_sentence() -> None:
    detail = assert_fails_only_the_bad("no_repetition", bad("Recorded (bundled model): the summary repeats"))
    assert detail.startswith("say each thing once; 28 sentences repeat an earlier one:")


def test_no_repetition_fails_a_sentence_that_loops_a_phrase() -> None:
    detail = assert_fails_only_the_bad("no_repetition", bad("A sentence that loops a phrase"))
    assert "loop a phrase" in detail and 'repeats "errors are values' in detail


def test_no_repetition_fails_a_shuffled_repeat() -> None:
    assert_fails_only_the_bad("no_repetition", bad("The same sentence twice with its words shuffled"))


@pytest.mark.parametrize(
    "note,shown",
    [
        ("Recorded (bundled model): a project line ending", "HTML entities ('&#x')"),
        ("Recorded (bundled model): the summary repeats", "HTML tags ('</p>')"),
        ("Recorded (stronger model): a broken Markdown link", "broken URLs ('https://')"),
        ("Recorded (stronger model, llama.cpp grammar)", "words glued together (whichcalestolarge)"),
        ("HTML tags, an entity and raw JSON", "JSON or bracket debris ('{')"),
        ("Code with braces", "JSON or bracket debris"),
        ("Markdown links copied from the page", "Markdown links"),
    ],
)
def test_no_markup_fails_markup_leaks_and_says_which(note: str, shown: str) -> None:
    detail = assert_fails_only_the_bad("no_markup", bad(note))
    assert detail.startswith("write plain sentences") and shown in detail


def test_language_fails_non_english_tokens_that_the_identifier_alone_misses() -> None:
    sentence = "This approach helps 做出-informed决策 for the ML平台 team."
    assert _identifier("en").classify(sentence)[0] == "en"  # why the script check is needed
    detail = assert_fails_only_the_bad("language", bad("Recorded (stronger model): non-English tokens"))
    assert "做出-informed决策" in detail and "ML平台" in detail and "latin script" in detail


@pytest.mark.parametrize("note", ["The whole reply in Spanish (", "One sentence in French"])
def test_language_fails_other_languages_in_the_latin_script(note: str) -> None:
    detail = assert_fails_only_the_bad("language", bad(note))
    assert "'es'" in detail or "'fr'" in detail


def test_no_padding_fails_the_teams_project_descriptions_passed_off_as_content() -> None:
    detail = assert_fails_only_the_bad("no_padding", bad("Recorded (stronger model): the summary pads"))
    assert "leave the team's projects to the project lines" in detail
    assert "\"The team's projects include a self-hosted LLM serving platform" in detail


def test_no_padding_fails_a_summary_that_copies_the_tldr() -> None:
    detail = assert_fails_only_the_bad("no_padding", bad("Recorded (stronger model): the summary starts by copying"))
    assert detail.startswith("the summary must add to the TL;DR, not repeat it")


def test_earned_relevance_fails_themes_in_the_enums_order_and_lists_the_supported_ones() -> None:
    detail = assert_fails_only_the_bad("earned_relevance", bad("Recorded pattern (stronger model): themes"))
    assert "does not support Developer experience (0.00), Generative media (0.00)" in detail
    assert detail.endswith(
        "The themes the evidence supports, strongest first: Backend services (0.13: data, structures)"
    )


def test_earned_relevance_fails_earned_themes_in_the_wrong_order() -> None:
    detail = assert_fails_only_the_bad("earned_relevance", bad("Earned themes in the wrong order"))
    assert "order the project lines strongest first; Model training and fine-tuning" in detail


# --- the primitives ----------------------------------------------------------------------------------------------


def test_terms_are_content_word_stems_with_numbers_kept() -> None:
    assert terms("The paper's team fine-tuned 10,000 models; the models are quantised.") == {
        "fine",
        "tune",
        "10000",
        "model",
        "quantiz",
    }
    assert terms("quantized LLMs") == terms("quantised LLM")
    assert terms("it is a link to the project") == set()


def test_evidence_sentences_follow_markdown_and_web_pages() -> None:
    text = (
        "Faster Go maps with Swiss Tables\n"
        "By: Michael Pratt | Date: 2025-02-26\n"
        "The hash table is a central data structure. It maps keys to values, e.g. strings to ints.\n\n"
        "Highlights\n"
        "- A single tool to replace pip, pipx, poetry and\n more.\n"
        "- 10-100x faster than pip.\n"
        "Documentation\n- CLI reference\n- REST API reference\n\n"
        "Install\n\n"
        "In 1954, Gene M. Amdahl and Arthur L. Samuel first used open addressing."
    )
    assert [s.text for s in evidence_sentences(text)] == [
        "Faster Go maps with Swiss Tables; By: Michael Pratt | Date: 2025-02-26",  # fragments make one enumeration
        "The hash table is a central data structure.",
        "It maps keys to values, e.g. strings to ints.",
        "A single tool to replace pip, pipx, poetry and more.",  # a wrapped list item is joined
        "10-100x faster than pip.",
        "Documentation; CLI reference; REST API reference; Install",
        "In 1954, Gene M. Amdahl and Arthur L. Samuel first used open addressing.",  # pysbd: initials
    ]  # "Highlights", a lone heading, is dropped
    assert [s.text for s in evidence_sentences("Highlights\n\nThe tool is fast.\n\n<img src='x.png'>")] == [
        "The tool is fast."
    ]


@pytest.mark.parametrize("example_id", list(EXAMPLES))
def test_a_sentence_copied_from_the_evidence_is_fully_supported(example_id: str) -> None:
    evidence_index = index(example_id)
    assert evidence_index.sentences
    for sentence in evidence_index.sentences:
        support = evidence_index.support(sentence)
        assert (support.score, support.unknown_names) == (1.0, ()), sentence


def test_support_is_local_not_measured_against_the_whole_evidence() -> None:
    """The old lexical scorer gave 1.0 to an invented reply: a long page shares common words with anything."""
    redis = index("github-redis-redis")
    invented = "The memcached protocol was renamed to Redis Software after the trademark guidelines changed."
    assert terms(invented) <= {t for sentence in redis.sentences for t in terms(sentence)}  # all in the page...
    assert redis.support(invented).score < thresholds.MIN_SUPPORT  # ...but no one or two sentences say it


def test_a_sentence_fusing_two_evidence_sentences_is_supported() -> None:
    lora = index("arxiv-2106-09685")
    fused = "LoRA freezes the pre-trained weights and reduces the GPU memory requirement by 3 times."
    support = lora.support(fused)
    assert support.score == 1.0 and " … " in support.best_evidence


def test_unknown_names_are_numbers_and_proper_names_found_nowhere_in_the_evidence() -> None:
    lora = index("arxiv-2106-09685")
    sentence = "The README says Microsoft's LoRA cut 10000 GPT-3-based parameters by Google in October at Lambda-T."
    assert lora.unknown_names(sentence) == ("Google", "October", "Lambda-T")  # 10,000 is 10000; URLs count


def test_theme_strengths_are_sorted_strongest_first_and_never_by_file_order() -> None:
    lora = index("arxiv-2106-09685")
    ranked = theme_strengths(lora, PROJECTS)
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    assert ranked == theme_strengths(lora, list(reversed(PROJECTS)))
    ties = [s.theme for s in ranked if s.score == 0]
    assert ties == sorted(ties)
    assert ranked[0].theme == "Model training and fine-tuning" and ranked[0].shared[:2] == ("lora", "adaptation")


def test_theme_strengths_put_the_expected_theme_first_on_most_dev_examples() -> None:
    """On the dev split, where the measure was calibrated (the holdout split is the evaluation report's)."""
    ranks = []
    dev = {i: e for i, e in EXAMPLES.items() if e.get("split", "dev") == "dev" and e["expected_theme"]}
    for example_id, example in dev.items():
        themes = [s.theme for s in theme_strengths(index(example_id), PROJECTS)]
        ranks.append(themes.index(example["expected_theme"]))
        assert theme_strengths(index(example_id), PROJECTS)[ranks[-1]].score >= CONFIG.min_theme_strength
    assert len(dev) == 32
    assert sum(r == 0 for r in ranks) >= 27 and sum(r < 2 for r in ranks) >= 31  # of 32, measured: 28 and 31


def _extractive(example_id: str) -> ComposedReply:
    """The extractive compose mode's reply without a model: the source's own sentences, code's project lines."""
    evidence_index = index(example_id)
    themes = earned_themes(evidence_index, PROJECTS, CONFIG.min_theme_strength)
    composer = ExtractiveComposer(ComposerSettings(), None, CONFIG.max_similarity, PROJECTS)
    return asyncio.run(composer.compose(None, evidence(example_id), evidence_index, themes)).reply


@pytest.mark.parametrize("example_id", list(EXAMPLES))
def test_an_extractive_reply_passes_every_content_gate(example_id: str) -> None:
    reply = _extractive(example_id)
    assert reply.tldr and reply.summary
    results = check_content(reply, GateContext(index(example_id), PROJECTS), CONFIG)
    assert [g.detail for g in results if not g.passed] == []


# --- configuration and calibration -------------------------------------------------------------------------------


def test_the_config_defaults_are_the_settings_defaults() -> None:
    assert ContentGateConfig.from_settings(ComposerSettings()) == ContentGateConfig()


def test_content_gates_are_chosen_by_name_and_unknown_names_are_refused() -> None:
    settings = ComposerSettings(CONTENT_GATES="grounded, language", REPLY_LANGUAGE="en")
    assert ContentGateConfig.from_settings(settings).enabled == {"grounded", "language"}
    assert ComposerSettings(CONTENT_GATES="").content_gates == frozenset()
    with pytest.raises(ValueError, match=r"unknown content gate\(s\) \['grounding'\]; the content gates are grounded"):
        ComposerSettings(CONTENT_GATES="grounding,language")
    with pytest.raises(ValueError, match="unsupported reply language 'xx'"):
        ComposerSettings(REPLY_LANGUAGE="xx")


def test_a_disabled_gate_is_not_reported() -> None:
    entry = bad("Recorded (bundled model, first TL;DR")
    results = gates(entry, ContentGateConfig(enabled=frozenset(CONTENT_GATES) - {"grounded"}))
    assert "grounded" not in results and list(results) == [g for g in CONTENT_GATES if g != "grounded"]


def test_the_thresholds_separate_the_labelled_good_and_bad_replies() -> None:
    report = grounding_report(
        ENTRIES,
        {example_id: evidence(example_id) for example_id in {e["example_id"] for e in ENTRIES}},
        PROJECTS,
        min_support=CONFIG.min_support,
        max_similarity=CONFIG.max_similarity,
        min_theme_strength=CONFIG.min_theme_strength,
        padding_margin=CONFIG.padding_margin,
    )
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines() if line.startswith("| ")}

    def failing(measure: str) -> tuple[int, int]:
        cells = rows[measure].strip("| ").split(" | ")
        return int(cells[-1]), int(cells[1])

    for good in (
        "support, good TL;DR and summary sentences",
        "lowest support per good reply",
        "good sentences that disagree with their evidence",
        "most similar sentence pair per good reply",
        "projects minus evidence support, good sentences",
        "theme strength, good replies' project lines",
    ):
        assert failing(good)[0] == 0, rows[good]
    for bad_measure in (
        "lowest support per bad reply that must fail grounded",
        "bad replies that must fail grounded with supported words: disagreeing (1)",
        "projects minus evidence support, padding sentences",
        "theme strength, unearned themes of bad replies",
    ):
        caught, total = failing(bad_measure)
        assert caught == total, rows[bad_measure]
    assert "Invented sentences caught by support, an unknown number or name, or agreement: 54 of 54." in report


@pytest.mark.parametrize(
    "sentence",
    [
        "<!channel> LoRA freezes the pre-trained model weights.",
        "LoRA freezes the pre-trained weights, says <@U024BE7LH>.",
        "See <#C024BE7LR|general> for LoRA.",
        "@here LoRA freezes the pre-trained model weights.",
        "LoRA freezes weights <https://evil.example|read more>.",
    ],
)
def test_no_markup_refuses_slack_mentions_and_link_syntax(sentence: str) -> None:
    reply = ComposedReply.model_validate(GOOD["arxiv-2106-09685"]["reply"])
    reply = reply.model_copy(update={"tldr": [sentence, *reply.tldr[1:]]})
    results = {g.name: g for g in check_content(reply, GateContext(index("arxiv-2106-09685"), PROJECTS), CONFIG)}
    assert not results["no_markup"].passed
    assert not quotable(sentence)
