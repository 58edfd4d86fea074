"""Quality gates judge the reply as Slack shows it; each failure says what to fix."""

import json
import re

import pytest

from composer.gates import GATE_NAMES, GateConfig, check_text, run_gates
from technoshare_common.schemas import ComposedReply, ProjectLink
from technoshare_common.slack_format import render_blocks, render_text
from technoshare_common.text import ONE_SENTENCE_PATTERN, count_sentences, split_sentences
from tests.support.scripted_llm import _reply

CONFIG = GateConfig(tldr_sentences=3, summary_min=10, summary_max=15, themes=("LLM inference", "ML platform"))


def _content(**changes: object) -> str:
    reply = _reply("LLM inference", 3) | changes
    return json.dumps(reply)


def _failed(content: str) -> set[str]:
    return {g.name for g in run_gates(content, CONFIG).failures}


def test_a_good_reply_passes_every_gate() -> None:
    report = run_gates(_content(), CONFIG)
    assert report.passed
    assert [g.name for g in report.results] == list(GATE_NAMES)
    assert report.text is not None and report.text.count("\n\n\n") == 2


def test_two_tldr_sentences_fail_only_the_tldr_gate() -> None:
    content = _content(tldr=["One sentence here is fine.", "Two sentences is not enough."])
    assert _failed(content) == {"tldr_sentence_count"}


def test_a_tldr_item_hiding_two_sentences_is_counted_as_two() -> None:
    content = _content(tldr=["First claim here. Second claim here.", "Third one.", "Fourth one."])
    report = run_gates(content, CONFIG)
    [failure] = report.failures
    assert failure.name == "tldr_sentence_count" and "has 4 sentences" in failure.detail


@pytest.mark.parametrize("count,ok", [(9, False), (10, True), (15, True), (16, False)])
def test_summary_must_have_10_to_15_sentences(count: int, ok: bool) -> None:
    content = _content(summary=[f"Sentence number {i} says something." for i in range(count)])
    assert ("summary_sentence_count" not in _failed(content)) is ok


def test_markdown_that_slack_does_not_render_fails_formatting() -> None:
    content = _content(summary=[f"This is **bold** number {i}." for i in range(10)])
    report = run_gates(content, CONFIG)
    [failure] = report.failures
    assert failure.name == "slack_formatting" and "**bold**" in failure.detail


def test_an_unknown_theme_or_broken_json_fails_schema_and_nothing_else_is_judged() -> None:
    assert _failed(_content(projects=[{"theme": "Cooking", "relevance": "Not ours at all today."}])) == set(GATE_NAMES)
    report = run_gates('{"tldr": ["cut off', CONFIG)
    assert not report.passed and report.reply is None
    assert report.results[0].name == "schema_validity" and "not valid JSON" in report.results[0].detail


def test_project_lines_without_the_theme_prefix_fail() -> None:
    text = render_text(ComposedReply(**_reply("LLM inference", 3)))  # type: ignore[arg-type]
    broken = text.replace("Theme: LLM inference", "LLM inference")
    results = {g.name: g for g in check_text(broken, CONFIG)}
    assert not results["projects_theme_prefix"].passed
    assert results["tldr_sentence_count"].passed


def test_sections_in_the_wrong_order_fail_formatting() -> None:
    text = render_text(ComposedReply(**_reply("LLM inference", 3)))  # type: ignore[arg-type]
    tldr, summary, projects = text.split("\n\n\n")
    results = {g.name: g for g in check_text("\n\n\n".join([summary, tldr, projects]), CONFIG)}
    assert not results["slack_formatting"].passed


@pytest.mark.parametrize(
    "text,count",
    [
        ("One. Two! Three?", 3),
        ("Version 2.0 of arxiv.org is out. It is fast.", 2),
        ('He said "stop." Then left.', 2),
        ("", 0),
    ],
)
def test_sentence_counting(text: str, count: int) -> None:
    assert count_sentences(text) == count
    assert len(split_sentences(text)) == count


@pytest.mark.parametrize(
    "sentence,ok",
    [
        ("LoRA adds 2.0 times fewer parameters to GPT-3.5 models.", True),
        ("Too short.", False),
        ("Two sentences here. Are not allowed at all.", False),
        ('A "quoted" word is refused by the pattern.', False),
        ("No terminal punctuation in this sentence at all", False),
    ],
)
def test_the_one_sentence_pattern(sentence: str, ok: bool) -> None:
    assert bool(re.match(ONE_SENTENCE_PATTERN, sentence)) is ok
    if ok:
        assert count_sentences(sentence) == 1


def test_long_sections_are_split_across_blocks_within_slacks_limit() -> None:
    long_summary = [f"Sentence {i} " + "word " * 60 + "ends." for i in range(15)]
    reply = ComposedReply(
        tldr=["A b c d."] * 3, summary=long_summary, projects=[ProjectLink(theme="ML platform", relevance="x y z w.")]
    )
    blocks = render_blocks(reply, "https://example.com")
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) > 3 and all(len(b["text"]["text"]) <= 3000 for b in sections)
