"""Quality gates judge the reply as Slack shows it; each failure says what to fix.

The layout gates are tested here with the content gates off (LAYOUT); tests/unit/test_content_gates.py tests
those. The scripted reply is about LoRA, judged against the LoRA paper's pinned evidence.
"""

import dataclasses
import json

import pytest

from composer.projects import load_projects
from composer.quality.content import CONTENT_GATES, ContentGateConfig, GateContext
from composer.quality.evidence import EvidenceIndex
from composer.quality.gates import GATE_NAMES, GateConfig, check_reply, check_text, run_gates
from technoshare_common.schemas import ComposedReply, Evidence, ProjectLink
from technoshare_common.settings import REPO_DATA_DIR
from technoshare_common.slack_format import render_blocks, render_text
from technoshare_common.text import count_sentences, split_sentences
from tests.support.scripted_llm import _reply

PROJECTS = load_projects(REPO_DATA_DIR / "projects.yaml")
THEME = "Model training and fine-tuning"  # the theme the LoRA paper earns
CONFIG = GateConfig(tldr_sentences=3, summary_min=10, summary_max=15, themes=tuple(sorted({p.theme for p in PROJECTS})))
LAYOUT = dataclasses.replace(CONFIG, content=ContentGateConfig(enabled=frozenset()))
_EXAMPLES = json.loads((REPO_DATA_DIR / "eval_dataset.json").read_text())["examples"]
_LORA = next(Evidence.model_validate(e["evidence"]) for e in _EXAMPLES if e["id"] == "arxiv-2106-09685")
CONTEXT = GateContext(EvidenceIndex.from_evidence(_LORA), PROJECTS)


def _content(**changes: object) -> str:
    reply = _reply(THEME, 3) | changes
    return json.dumps(reply)


def _failed(content: str, config: GateConfig = LAYOUT) -> set[str]:
    return {g.name for g in run_gates(content, config, CONTEXT).failures}


def test_a_good_reply_passes_every_gate() -> None:
    report = run_gates(_content(), CONFIG, CONTEXT)
    assert report.passed, report.failures
    assert [g.name for g in report.results] == list(GATE_NAMES)
    assert report.text is not None and report.text.count("\n\n\n") == 2


def test_the_content_gates_judge_what_the_reply_says() -> None:
    invented = "LoRA was released by Google in October as part of a project called Lambda-T."
    content = _content(tldr=[invented, *_reply(THEME, 3)["tldr"][1:]])
    assert _failed(content, CONFIG) == {"grounded"}
    assert _failed(content, LAYOUT) == set()
    failure = next(g for g in run_gates(content, CONFIG, CONTEXT).failures)
    assert "Lambda-T" in failure.detail and "say only what the evidence says" in failure.detail


def test_check_reply_is_every_gate_after_schema_validity() -> None:
    reply = ComposedReply.model_validate(_reply(THEME, 3))
    results = check_reply(reply, render_text(reply), CONFIG, CONTEXT)
    assert [g.name for g in results] == list(GATE_NAMES[1:]) and all(g.passed for g in results)
    only_grounded = dataclasses.replace(CONFIG, content=ContentGateConfig(enabled=frozenset({"grounded"})))
    names = [g.name for g in check_reply(reply, render_text(reply), only_grounded, CONTEXT)]
    assert names == [*GATE_NAMES[1:5], "grounded"]


def test_gate_names_are_the_layout_gates_then_the_content_gates() -> None:
    assert GATE_NAMES[5:] == CONTENT_GATES
    assert CONFIG.gate_names == GATE_NAMES and LAYOUT.gate_names == GATE_NAMES[:5]


def test_two_tldr_sentences_fail_only_the_tldr_gate() -> None:
    content = _content(tldr=["One sentence here is fine.", "Two sentences is not enough."])
    assert _failed(content) == {"tldr_sentence_count"}


def test_a_tldr_item_hiding_two_sentences_is_counted_as_two() -> None:
    content = _content(tldr=["First claim here. Second claim here.", "Third one.", "Fourth one."])
    report = run_gates(content, LAYOUT, CONTEXT)
    [failure] = report.failures
    assert failure.name == "tldr_sentence_count" and "has 4 sentences" in failure.detail


@pytest.mark.parametrize("count,ok", [(9, False), (10, True), (15, True), (16, False)])
def test_summary_must_have_10_to_15_sentences(count: int, ok: bool) -> None:
    content = _content(summary=[f"Sentence number {i} says something." for i in range(count)])
    assert ("summary_sentence_count" not in _failed(content)) is ok


def test_markdown_that_slack_does_not_render_fails_formatting() -> None:
    content = _content(summary=[f"This is **bold** number {i}." for i in range(10)])
    report = run_gates(content, LAYOUT, CONTEXT)
    [failure] = report.failures
    assert failure.name == "slack_formatting" and "**bold**" in failure.detail


def test_an_unknown_theme_or_broken_json_fails_schema_and_nothing_else_is_judged() -> None:
    cooking = _content(projects=[{"theme": "Cooking", "relevance": "Not ours at all today."}])
    assert _failed(cooking, CONFIG) == set(GATE_NAMES)
    # A disabled content gate is not reported, not even as not checked.
    assert [g.name for g in run_gates(cooking, LAYOUT, CONTEXT).results] == list(GATE_NAMES[:5])
    report = run_gates('{"tldr": ["cut off', CONFIG, CONTEXT)
    assert not report.passed and report.reply is None
    assert report.results[0].name == "schema_validity" and "not valid JSON" in report.results[0].detail
    assert all(g.detail == "not checked: no valid reply" for g in report.results[1:])


def test_project_lines_without_the_theme_prefix_fail() -> None:
    text = render_text(ComposedReply(**_reply(THEME, 3)))  # type: ignore[arg-type]
    broken = text.replace(f"Theme: {THEME}", THEME)
    results = {g.name: g for g in check_text(broken, CONFIG)}
    assert not results["projects_theme_prefix"].passed
    assert results["tldr_sentence_count"].passed


def test_notes_under_the_reply_are_neither_a_section_nor_counted_sentences() -> None:
    note = "Quoted from the source: the model was unavailable."
    reply = ComposedReply.model_validate(_reply(THEME, 3) | {"notes": [note]})
    results = check_text(render_text(reply), CONFIG)
    assert [g.name for g in results if not g.passed] == []


def test_sections_in_the_wrong_order_fail_formatting() -> None:
    text = render_text(ComposedReply(**_reply(THEME, 3)))  # type: ignore[arg-type]
    tldr, summary, projects = text.split("\n\n\n")
    results = {g.name: g for g in check_text("\n\n\n".join([summary, tldr, projects]), CONFIG)}
    assert not results["slack_formatting"].passed


@pytest.mark.parametrize(
    "text,count",
    [
        ("One. Two! Three?", 3),
        ("Version 2.0 of arxiv.org is out. It is fast.", 2),
        ('He said "stop." Then left.', 2),
        ("It maps keys to values, e.g. strings to ints. Then it grows.", 2),
        ("In 1954, Gene M. Amdahl used it. Others followed.", 2),
        ("First paragraph ends here\n\nSecond paragraph", 2),
        ("", 0),
    ],
)
def test_sentence_counting(text: str, count: int) -> None:
    assert count_sentences(text) == count
    assert len(split_sentences(text)) == count


def test_long_sections_are_split_across_blocks_within_slacks_limit() -> None:
    long_summary = [f"Sentence {i} " + "word " * 60 + "ends." for i in range(15)]
    reply = ComposedReply(
        tldr=["A b c d."] * 3, summary=long_summary, projects=[ProjectLink(theme="ML platform", relevance="x y z w.")]
    )
    blocks = render_blocks(reply, "https://example.com")
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) > 3 and all(len(b["text"]["text"]) <= 3000 for b in sections)
