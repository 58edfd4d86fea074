"""The evaluation suite's checks that need no model or server: the recorded bad replies of data/eval_replies.json
through the pipeline's gates, the pass rates with and without the content gates, and relevance's threshold."""

import dataclasses
from functools import cache

import pytest

from composer.projects import load_projects
from composer.quality.content import CONTENT_GATES, GateContext
from composer.quality.gates import GATE_NAMES, GateConfig
from composer.settings import ComposerSettings
from evaluation.dataset import ANY_THEME, load_dataset
from evaluation.negatives import NegativesReport, RecordedReply, check_recorded_replies, load_recorded_replies
from evaluation.runner import Comparison, EvalSummary, ExampleResult
from evaluation.scorers import HARD_SCORERS, NO_PROJECT, gate_contexts, relevance


@cache
def suite() -> tuple[GateConfig, dict[str, GateContext], list[RecordedReply]]:
    """The gates as composer configures them by default, each example's context, and the recorded replies."""
    settings = ComposerSettings()
    projects = load_projects(settings.projects_file)
    themes = {project.theme for project in projects}
    contexts = gate_contexts(load_dataset(settings.data_dir / "eval_dataset.json", themes).examples, projects)
    replies = load_recorded_replies(settings.data_dir / "eval_replies.json", set(contexts))
    return GateConfig.from_settings(settings, themes), contexts, replies


def check(config: GateConfig) -> NegativesReport:
    _, contexts, replies = suite()
    return check_recorded_replies(replies, config, contexts)


def test_every_recorded_bad_reply_is_refused_by_the_gates_it_names() -> None:
    config, _, replies = suite()
    report = check(config)
    assert len(report.bad) == sum(reply.label == "bad" for reply in replies) > 0
    assert [(v.example_id, v.expected, v.failed) for v in report.accepted] == []
    assert report.all_refused and report.metrics()["negatives_refused"] == 1.0


@pytest.mark.parametrize("gate", CONTENT_GATES)
def test_a_disabled_content_gate_lets_through_the_bad_replies_only_it_would_refuse(gate: str) -> None:
    config, _, _ = suite()
    content = dataclasses.replace(config.content, enabled=config.content.enabled - {gate})
    report = check(dataclasses.replace(config, content=content))
    accepted = [(v.example_id, v.note) for v in report.accepted]
    assert accepted == [(v.example_id, v.note) for v in report.bad if gate in v.expected]
    assert accepted, f"no recorded bad reply shows what {gate} refuses"
    assert not report.all_refused and report.metrics()["negatives_refused"] < 1.0


def _result(example_id: str, failing: set[str], split: str = "dev") -> ExampleResult:
    return ExampleResult(
        split=split,
        id=example_id,
        url=f"https://example.com/{example_id}",
        outcome="success",
        repaired=False,
        scores={name: 0.0 if name in failing else 1.0 for name in HARD_SCORERS},
        rationales={},
        error=None,
        text="",
        seconds=1.0,
        tokens=10,
    )


def test_the_structural_pass_rate_shows_what_the_content_gates_refuse() -> None:
    summary = EvalSummary(
        alias="prod",
        prompt_versions={},
        app_version="technoshare-test",
        results=[_result("clean", set()), _result("invented", {"grounded"}), _result("off-topic", {"relevance"})],
    )
    metrics = summary.summary_metrics()
    assert metrics["overall_pass_rate"] == pytest.approx(1 / 3)
    assert metrics["gates_pass_rate"] == pytest.approx(2 / 3)
    assert metrics["structural_pass_rate"] == 1.0
    assert [metrics[f"{name}_pass_rate"] for name in ("clean", "invented", "off-topic")] == [1.0, 0.0, 0.0]
    assert metrics["grounded_pass_rate"] == pytest.approx(2 / 3) and metrics["relevance_pass_rate"] == pytest.approx(
        2 / 3
    )
    assert {metrics[f"{name}_pass_rate"] for name in GATE_NAMES if name != "grounded"} == {1.0}


@pytest.mark.parametrize(
    ("themes", "passed"),
    [
        (["Generative media"], True),
        (["ML platform", "Generative media"], True),  # the evidence may support another project more
        (["ML platform"], False),
        ([], False),
    ],
)
def test_relevance_passes_when_the_expected_theme_is_among_the_project_lines(themes: list[str], passed: bool) -> None:
    reply = {"tldr": [], "summary": [], "projects": [{"theme": theme, "relevance": "r"} for theme in themes]}
    feedback = relevance(outputs={"reply": reply}, expectations={"expected_theme": "Generative media"})
    assert feedback.value is passed


@pytest.mark.parametrize(("themes", "passed"), [([], True), (["Generative media"], False)])
def test_relevance_of_a_link_no_project_relates_to_passes_only_when_the_reply_says_so(
    themes: list[str], passed: bool
) -> None:
    reply = {"tldr": ["x"], "summary": ["y"], "projects": [{"theme": t, "relevance": "z"} for t in themes]}
    feedback = relevance(outputs={"reply": reply}, expectations={"expected_theme": NO_PROJECT})
    assert feedback.value is passed
    assert relevance(outputs={"reply": None}, expectations={"expected_theme": NO_PROJECT}).value is False


def _summary(alias: str, *results: ExampleResult) -> EvalSummary:
    return EvalSummary(alias=alias, prompt_versions={}, app_version=f"technoshare-{alias}", results=list(results))


def test_a_candidate_failing_a_regression_case_prod_passes_is_refused_whatever_the_tolerance() -> None:
    """A reply voted down in Slack, frozen as a case (evaluation.regressions), allows no slack."""
    prod = _summary("prod", _result("a", set()), _result("regression-x", set(), split="regression"))
    compared = Comparison(prod, tolerance=0.6)  # a drop of half the examples is within it
    fails_the_case = _summary("candidate", _result("a", set()), _result("regression-x", {"grounded"}, "regression"))
    fails_an_example = _summary("candidate", _result("a", {"grounded"}), _result("regression-x", set(), "regression"))
    assert compared.regressed(fails_the_case)
    assert not compared.regressed(fails_an_example)
    both_fail = Comparison(_summary("prod", _result("regression-x", {"grounded"}, "regression")), tolerance=0.0)
    assert not both_fail.regressed(_summary("candidate", _result("regression-x", {"grounded"}, "regression")))


def test_a_regression_case_without_a_theme_leaves_relevance_to_the_gate() -> None:
    reply = {"tldr": [], "summary": [], "projects": [{"theme": "ML platform", "relevance": "r"}]}
    assert relevance(outputs={"reply": reply}, expectations={"expected_theme": ANY_THEME}).value is True
    assert relevance(outputs={"reply": None}, expectations={"expected_theme": ANY_THEME}).value is False
