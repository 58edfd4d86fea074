"""The compose modes, the degraded reply and the unreadable-link notice, through the real pipeline.

retrieval, poster and ingest are the pipeline's ServiceClients, seen through a small stand-in that records
what composer asks of them; the LLM is the scripted OpenAI-protocol upstream, reached by the real openai client.
"""

import dataclasses
import json
from pathlib import Path

import pytest

from composer.commentary import project_line
from composer.extractive import DEGRADED_NOTE, SHORT_SOURCE_NOTE, ExtractiveComposer, quotable, rank_sentences
from composer.notices import unreadable_body, unreadable_notice
from composer.pipeline import DependencyUnavailable
from composer.projects import load_projects
from composer.quality.evidence import EvidenceIndex
from composer.quality.gates import GateConfig, parse_reply
from composer.quality.themes import theme_strengths
from composer.settings import ComposerSettings
from technoshare_common.metrics import JOB_ATTEMPTS
from technoshare_common.schemas import (
    Evidence,
    NoticeDelivery,
    Outcome,
)
from technoshare_common.settings import REPO_DATA_DIR
from technoshare_common.slack_format import NO_PROJECT_LINE
from tests.support.composer_services import ComposerServices, composer_pipeline
from tests.support.jobs import arxiv_job
from tests.support.scripted_llm import ScriptedLLM

JOB, FINISHED = arxiv_job("j1")
DATASET = json.loads((REPO_DATA_DIR / "eval_dataset.json").read_text())["examples"]


def example_evidence(example_id: str) -> Evidence:
    [example] = [e for e in DATASET if e["id"] == example_id]
    return Evidence.model_validate(example["evidence"])


LORA = example_evidence("arxiv-2106-09685")


def source_text(evidence: Evidence) -> str:
    return " ".join([evidence.text, *(s.text for s in evidence.snippets)])


def test_auto_composes_extractively_for_the_listed_small_models_only() -> None:
    assert ComposerSettings(STAGE_B_MODEL="smollm2-135m-instruct").resolved_compose_mode() == "extractive"
    assert ComposerSettings(STAGE_B_MODEL="gpt-4o-mini").resolved_compose_mode() == "abstractive"
    forced = ComposerSettings(STAGE_B_MODEL="gpt-4o-mini", COMPOSE_MODE="extractive")
    assert forced.resolved_compose_mode() == "extractive"


def test_ranking_keeps_only_quotable_prose() -> None:
    sentences = [
        "LoRA freezes the pretrained weights and trains small rank decomposition matrices instead.",
        "See https://github.com/microsoft/LoRA for the code and the checkpoints.",
        "| model | params | score |",
        "Short one.",
        "LoRA freezes the pretrained weights and trains small rank decomposition matrices instead.",
        "The rank decomposition matrices are trained while the pretrained weights stay frozen.",
    ]
    ranked = rank_sentences(EvidenceIndex(sentences), max_similarity=0.85)
    assert sorted(ranked) == sorted({s for s in sentences if quotable(s)})
    assert len(ranked) == 2


async def test_without_a_model_every_sentence_is_the_sources_own_in_reading_order() -> None:
    evidence = example_evidence("github-fastapi-fastapi")
    index = EvidenceIndex.from_evidence(evidence)
    projects = load_projects(ComposerSettings().projects_file)
    themes = theme_strengths(index, projects)
    draft = await ExtractiveComposer(ComposerSettings(), None, 0.82, projects).compose(None, evidence, index, themes)
    text = source_text(evidence)
    reply = draft.reply
    assert reply.tldr and reply.summary and draft.selection == "ranked"
    assert all(sentence in text for sentence in reply.tldr + reply.summary)
    assert not set(reply.tldr) & set(reply.summary)
    positions = [index.sentences.index(s) for s in reply.summary]
    assert positions == sorted(positions)
    assert [p.theme for p in reply.projects] == [t.theme for t in themes[: len(reply.projects)]]


async def test_extractive_mode_lets_the_model_pick_the_tldr_and_nothing_else(llm: tuple[ScriptedLLM, str]) -> None:
    services = ComposerServices(LORA)
    result = await composer_pipeline(services, LLM_GATEWAY_URL=llm[1], COMPOSE_MODE="extractive").run_job(JOB)
    assert result.outcome == Outcome.success, result.gates
    assert result.compose_mode == "extractive"
    [request] = services.posted
    assert request.reply is not None
    text = source_text(services.evidence)
    assert all(s in text for s in request.reply.tldr + request.reply.summary)
    # The LoRA abstract is short: the reply says so instead of padding the summary.
    assert request.reply.notes == [SHORT_SOURCE_NOTE.format(count=len(request.reply.summary))]
    assert [r["response_format"]["json_schema"]["name"] for r in llm[0].requests] == ["stage_b_selection"]


async def test_an_unavailable_llm_posts_the_quoted_reply_labelled_as_degraded() -> None:
    services = ComposerServices(LORA)
    result = await composer_pipeline(services, LLM_GATEWAY_URL="http://127.0.0.1:9", COMPOSE_MODE="extractive").run_job(
        JOB
    )
    assert result.outcome == Outcome.degraded, result.gates
    [request] = services.posted
    assert request.reply is not None and request.reply.notes[0] == DEGRADED_NOTE
    assert all(s in source_text(services.evidence) for s in request.reply.tldr + request.reply.summary)


async def test_an_unavailable_llm_is_retried_when_so_configured() -> None:
    services = ComposerServices(LORA)
    composer = composer_pipeline(services, LLM_GATEWAY_URL="http://127.0.0.1:9", LLM_UNAVAILABLE_REPLY="retry")
    with pytest.raises(Exception, match="llm"):
        await composer.run_job(JOB)
    assert services.posted == []


@pytest.mark.parametrize("delivery", list(NoticeDelivery))
async def test_an_unreadable_link_gets_a_short_notice_once(delivery: NoticeDelivery) -> None:
    services = ComposerServices(
        example_evidence("arxiv-2106-09685"),
        unreadable={"kind": "not_found", "message": "the page was not found", "transient": False},
    )
    composer = composer_pipeline(services, LLM_GATEWAY_URL="http://127.0.0.1:9", UNREADABLE_LINK_REPLY=delivery.value)
    result = await composer.run_job(JOB)
    assert result.outcome == Outcome.unreadable and result.notice is not None
    assert result.notice.text == "I could not summarise this link: the page does not exist (HTTP 404 or 410)."
    if delivery == NoticeDelivery.none:
        assert services.posted == []
    else:
        [request] = services.posted
        assert request.notice == result.notice and request.reply is None and request.message_ts == JOB.message_ts
    # A retry after a lost answer posts the checkpointed notice again (poster keeps it to one), composing nothing.
    assert services.saved.composed is not None and services.saved.composed.notice == result.notice
    again = JOB.model_copy(update={"attempt": 2, "checkpoints": services.saved})
    services.unreadable = None
    assert (await composer.run_job(again)).outcome == Outcome.unreadable


@pytest.mark.parametrize(
    "detail",
    [
        {"kind": "server_error", "message": "the site failed", "transient": True},
        {"kind": "paywall", "transient": True},  # a newer retrieval's kind, mid-rollout: still retried
    ],
)
async def test_a_site_that_is_down_for_now_is_retried_not_answered_as_dead(detail: dict[str, object]) -> None:
    services = ComposerServices(example_evidence("arxiv-2106-09685"), unreadable=detail)
    composer = composer_pipeline(services, LLM_GATEWAY_URL="http://127.0.0.1:9")
    with pytest.raises(DependencyUnavailable, match="linked site"):
        await composer.run_job(JOB)
    assert services.posted == []


async def test_on_the_final_attempt_an_unavailable_llm_or_site_is_answered_not_left_silent() -> None:
    final = JOB.model_copy(update={"final_attempt": True})
    services = ComposerServices(LORA)
    composer = composer_pipeline(services, LLM_GATEWAY_URL="http://127.0.0.1:9", LLM_UNAVAILABLE_REPLY="retry")
    assert (await composer.run_job(final)).outcome == Outcome.degraded

    down = ComposerServices(
        example_evidence("arxiv-2106-09685"),
        unreadable={"kind": "timeout", "message": "the site timed out", "transient": True},
    )
    result = await composer_pipeline(down, LLM_GATEWAY_URL="http://127.0.0.1:9").run_job(final)
    assert result.outcome == Outcome.unreadable
    [request] = down.posted
    assert request.notice is not None and "did not answer in time" in request.notice.text


@pytest.mark.parametrize("example", [e["id"] for e in DATASET])
async def test_the_quoted_reply_of_every_eval_example_passes_every_gate(example: str) -> None:
    """The degraded reply (no model at all) is fit to post on all the suite's sources, content gates included."""
    services = ComposerServices(example_evidence(example))
    result = await composer_pipeline(services, LLM_GATEWAY_URL="http://127.0.0.1:9", COMPOSE_MODE="extractive").run_job(
        JOB
    )
    assert result.outcome == Outcome.degraded, [g for g in result.gates if not g.passed]


def _evidence_of(text: str) -> Evidence:
    return Evidence(
        url="https://example.com/a",
        final_url="https://example.com/a",
        adapter_name="test",
        coverage="full",
        title="A page",
        text=text,
    )


async def test_a_dry_run_never_answers_with_the_quoted_reply() -> None:
    """The evaluation suite composes as a dry run: with the model down it must fail, not score the quoted reply."""
    composer = composer_pipeline(
        ComposerServices(LORA), LLM_GATEWAY_URL="http://127.0.0.1:9", COMPOSE_MODE="extractive"
    )
    result = await composer.composer.compose_evidence("https://arxiv.org/abs/2106.09685", "", LORA)
    assert result.outcome == Outcome.error and result.reply is None and "llm unavailable" in (result.error or "")
    with pytest.raises(DependencyUnavailable):
        await composer.compose("https://arxiv.org/abs/2106.09685", "", LORA)


async def test_a_source_with_too_little_text_gets_a_notice() -> None:
    services = ComposerServices(_evidence_of("Welcome to the home page of our small project today."))
    result = await composer_pipeline(services, LLM_GATEWAY_URL="http://127.0.0.1:9").run_job(JOB)
    assert result.outcome == Outcome.unreadable
    [request] = services.posted
    assert request.notice is not None and "too little text" in request.notice.text


async def test_a_link_no_project_relates_to_says_so_instead_of_guessing() -> None:
    text = " ".join(
        [
            "Sourdough bread needs a lively starter fed with flour and water every day.",
            "The dough rests overnight in a cool kitchen so the flavour can develop slowly.",
            "Bakers fold the dough several times during the first hours of the rise.",
            "A hot cast iron pot gives the loaf a crisp crust and an open crumb.",
            "Scoring the top of the loaf lets steam escape in a controlled way.",
            "The bread should cool for an hour before anyone cuts the first slice.",
        ]
    )
    services = ComposerServices(_evidence_of(text))
    result = await composer_pipeline(services, LLM_GATEWAY_URL="http://127.0.0.1:9", COMPOSE_MODE="extractive").run_job(
        JOB
    )
    assert result.outcome == Outcome.degraded, [g for g in result.gates if not g.passed]
    [request] = services.posted
    assert request.reply is not None and request.reply.projects == []
    assert result.text is not None and result.text.split("*Projects*\n")[1].startswith(NO_PROJECT_LINE)


def test_notes_are_codes_to_add_never_the_models() -> None:
    config = GateConfig.from_settings(ComposerSettings(), ["LLM inference"])
    content = json.dumps(
        {"tldr": ["A."], "summary": ["B."], "projects": [], "notes": ["LoRA was invented by OpenAI in 2015."]}
    )
    reply, _ = parse_reply(content, config)
    assert reply is not None and reply.notes == []


async def test_an_attempt_that_lost_the_job_stops_before_posting(llm: tuple[ScriptedLLM, str]) -> None:
    services = ComposerServices(LORA)
    services.current_attempt = JOB.attempt + 1  # a newer attempt took the lease over
    with pytest.raises(DependencyUnavailable, match="newer attempt"):
        await composer_pipeline(services, LLM_GATEWAY_URL=llm[1], COMPOSE_MODE="extractive").run_job(JOB)
    assert services.posted == [] and llm[0].requests == []


async def test_a_draft_the_gates_refuse_after_repair_is_answered_by_the_extractive_fallback(
    llm: tuple[ScriptedLLM, str],
) -> None:
    services = ComposerServices(LORA)
    # Every draft uses **bold**; Stage A searches, and what it reads is evidence for the draft, but the fallback
    # quotes the link itself.
    job = JOB.model_copy(update={"slack_text": "LoRA again break-the-gates use-search"})
    before = JOB_ATTEMPTS.labels("success")._value.get()
    result = await composer_pipeline(services, LLM_GATEWAY_URL=llm[1], COMPOSE_MODE="abstractive").run_job(job)
    assert result.outcome == Outcome.success and result.compose_mode == "extractive_fallback", result.gates
    assert result.repaired and [g.name for g in result.refused_gates] == ["slack_formatting"]
    assert result.gate_failures == []
    assert set(result.prompt_versions) == {"stage_a_extract_facts", "stage_b_compose_reply", "stage_b_select_sentences"}
    [request] = services.posted
    assert request.reply is not None
    assert all(s in source_text(services.evidence) for s in request.reply.tldr + request.reply.summary)
    assert JOB_ATTEMPTS.labels("success")._value.get() == before + 1  # the job's fate is ingest's to count
    assert result.tool_calls == 1


async def test_a_dry_run_never_answers_with_the_fallback(llm: tuple[ScriptedLLM, str]) -> None:
    composer = composer_pipeline(ComposerServices(LORA), LLM_GATEWAY_URL=llm[1], COMPOSE_MODE="abstractive")
    result = await composer.compose(str(JOB.url), "break-the-gates", LORA)  # what the evaluation runs
    assert result.outcome == Outcome.gate_failed and result.compose_mode == "abstractive"
    assert result.refused_gates == [] and "fallback" not in result.timings


async def test_post_on_gate_failure_posts_the_refused_draft_instead_of_the_fallback(
    llm: tuple[ScriptedLLM, str],
) -> None:
    services = ComposerServices(LORA)
    job = JOB.model_copy(update={"slack_text": "LoRA again break-the-gates"})
    composer = composer_pipeline(
        services, LLM_GATEWAY_URL=llm[1], COMPOSE_MODE="abstractive", POST_ON_GATE_FAILURE="true"
    )
    result = await composer.run_job(job)
    assert result.outcome == Outcome.gate_failed and result.compose_mode == "abstractive"
    [request] = services.posted
    assert request.reply is not None and request.reply.tldr[0].startswith("**LoRA**")


async def test_a_sentence_the_judge_finds_contradicted_fails_grounded_and_the_fallback_answers(
    llm: tuple[ScriptedLLM, str],
) -> None:
    services = ComposerServices(LORA)
    llm[0].contradicted = "ten thousand times"
    settings = {"COMPOSE_MODE": "abstractive", "JUDGE_MODEL": "scripted", "JUDGE_SAMPLE_RATE": "1"}
    result = await composer_pipeline(services, LLM_GATEWAY_URL=llm[1], **settings).run_job(JOB)
    assert result.compose_mode == "extractive_fallback" and result.outcome == Outcome.success
    [refused] = result.refused_gates
    assert refused.name == "grounded" and "judge model" in refused.detail and "ten thousand" in refused.detail
    judged = [r for r in llm[0].requests if r["response_format"]["json_schema"]["name"] == "entailment_verdicts"]
    assert len(judged) == 2  # the draft and its repair
    assert all(r["model"] == "scripted" for r in judged)


async def test_the_judge_passes_an_entailed_draft_and_is_skipped_outside_its_sample(
    llm: tuple[ScriptedLLM, str],
) -> None:
    services = ComposerServices(LORA)
    settings = {"COMPOSE_MODE": "abstractive", "JUDGE_MODEL": "scripted", "JUDGE_SAMPLE_RATE": "1"}
    result = await composer_pipeline(services, LLM_GATEWAY_URL=llm[1], **settings).run_job(JOB)
    assert result.compose_mode == "abstractive" and result.outcome == Outcome.success, result.gate_failures
    assert "entailment" in result.timings
    llm[0].requests.clear()
    settings["JUDGE_SAMPLE_RATE"] = "0"
    result = await composer_pipeline(ComposerServices(LORA), LLM_GATEWAY_URL=llm[1], **settings).run_job(JOB)
    assert "entailment" not in result.timings
    assert not [r for r in llm[0].requests if "entailment" in json.dumps(r.get("response_format"))]


def test_a_422_that_is_not_retrievals_body_gets_the_generic_notice() -> None:
    settings = ComposerSettings()
    assert unreadable_body({"kind": "no-such-kind"}) is None and unreadable_body("<html>bad gateway</html>") is None
    assert unreadable_notice(None, settings).text == "I could not summarise this link: it could not be read."
    body = unreadable_body({"kind": "timeout", "message": "The site took too long.", "transient": True})
    assert body is not None and body.kind.transient
    assert (
        unreadable_notice(body.kind, settings).text
        == "I could not summarise this link: the site did not answer in time."
    )


def test_a_project_line_about_a_title_with_markup_carries_words_only() -> None:
    title = 'ollama/ollama: <img src="https://x.example/logo.png"> [Get up and running] {fast}'
    index = EvidenceIndex(["A local model runner for laptops and servers alike."], title=title)
    projects = load_projects(ComposerSettings().projects_file)
    strength = dataclasses.replace(theme_strengths(index, projects)[0], shared=())  # related by meaning only
    line = project_line(next(p for p in projects if p.name == strength.project), strength, index, "repository")
    assert "is about ollama/ollama: Get up and running fast." in line and not any(c in line for c in "<>[]{}"), line


def test_a_project_without_a_description_is_refused_when_loaded(tmp_path: Path) -> None:
    path = tmp_path / "projects.yaml"
    path.write_text("projects:\n  - {name: Atlas, theme: LLM inference, description: ''}\n")
    with pytest.raises(ValueError, match="every project needs a name, a theme and a description"):
        load_projects(path)
