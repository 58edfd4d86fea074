"""Checkpoints: an attempt after a failure resumes after the last finished stage and pays no LLM stage twice."""

from typing import Any

import pytest

from composer.llm import LLMUnavailable
from composer.pipeline import COMPOSED_REFUSED, DependencyUnavailable, Pipeline
from technoshare_common.schemas import (
    ComposeResult,
    JobCheckpoints,
    JobRunRequest,
    Notice,
    NoticeDelivery,
    Outcome,
)
from technoshare_common.text import split_sentences
from tests.support.composer_services import ComposerServices, composer_pipeline
from tests.support.jobs import arxiv_job
from tests.support.scripted_llm import ScriptedLLM

JOB, FINISHED = arxiv_job("j1")


def pipeline(llm_url: str, services: ComposerServices) -> Pipeline:
    return composer_pipeline(
        services, LLM_GATEWAY_URL=llm_url, COMPOSE_MODE="abstractive", LLM_UNAVAILABLE_REPLY="retry"
    )


def again(job: JobRunRequest, services: ComposerServices) -> JobRunRequest:
    """The next attempt as ingest hands it over: with what the last one checkpointed."""
    return job.model_copy(update={"attempt": job.attempt + 1, "checkpoints": services.saved})


async def test_a_failed_post_is_retried_without_composing_again(llm: tuple[ScriptedLLM, str]) -> None:
    services = ComposerServices(FINISHED.evidence, post_failures=1)
    composer = pipeline(llm[1], services)
    with pytest.raises(DependencyUnavailable, match="slack"):
        await composer.run_job(JOB)
    paid = len(llm[0].requests)
    assert services.saved.stages() == ["evidence", "stage_a", "stage_b", "composed"]

    result = await composer.run_job(again(JOB, services))
    assert result.outcome == Outcome.success and result.post is not None and result.post.message_ts == "9.9"
    assert len(llm[0].requests) == paid  # no LLM call on the second attempt
    assert services.calls == {"retrieval": 1, "poster": 2}


async def test_an_attempt_after_a_crash_resumes_after_the_last_finished_stage(
    llm: tuple[ScriptedLLM, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = ComposerServices(FINISHED.evidence)
    composer = pipeline(llm[1], services)
    real_compose = composer.composer.stage_b.compose

    async def upstream_down(*args: Any, **kwargs: Any) -> Any:
        raise LLMUnavailable("upstream down")

    monkeypatch.setattr(composer.composer.stage_b, "compose", upstream_down)
    with pytest.raises(DependencyUnavailable):
        await composer.run_job(JOB)
    assert services.saved.stages() == ["evidence", "stage_a"]
    stage_a_calls = len(llm[0].requests)

    monkeypatch.setattr(composer.composer.stage_b, "compose", real_compose)
    result = await composer.run_job(again(JOB, services))
    assert result.outcome == Outcome.success
    assert len(llm[0].requests) == stage_a_calls + 1  # Stage B only: Stage A is not paid for twice
    assert services.calls["retrieval"] == 1
    assert result.usage.total_tokens > 0 and result.facts == services.saved.stage_a.facts  # type: ignore[union-attr]


async def test_checkpoints_of_another_app_version_are_composed_again_not_posted(llm: tuple[ScriptedLLM, str]) -> None:
    services = ComposerServices(FINISHED.evidence, post_failures=1)
    composer = pipeline(llm[1], services)
    with pytest.raises(DependencyUnavailable, match="slack"):
        await composer.run_job(JOB)
    current = composer.composer.current_app_version()
    saved = services.saved
    assert saved.stage_a and saved.stage_b and saved.composed
    assert {saved.stage_a.app_version, saved.stage_b.app_version, saved.composed.app_version} == {current}
    # A rollout between the attempts: the saved reply was made by another version of the prompts or gates; an
    # attempt on this version then saved Stage A again (the store keeps both versions' stages side by side).
    old = "technoshare-000000000000"
    services.saved = saved.model_copy(
        update={
            "stage_b": saved.stage_b.model_copy(update={"app_version": old}),
            "composed": saved.composed.model_copy(update={"app_version": old}),
        }
    )
    paid = len(llm[0].requests)
    result = await composer.run_job(again(JOB, services))
    assert result.outcome == Outcome.success and result.post is not None
    assert len(llm[0].requests) > paid  # Stage B composed again, by this version (Stage A, this version's, kept)
    assert services.calls == {"retrieval": 1, "poster": 2}  # the evidence, the link's own, was kept
    assert services.saved.composed is not None and services.saved.composed.app_version == current


async def test_a_composed_checkpoint_that_fails_its_gates_again_is_composed_anew_not_posted(
    llm: tuple[ScriptedLLM, str],
) -> None:
    services = ComposerServices(FINISHED.evidence, post_failures=1)
    composer = pipeline(llm[1], services)
    with pytest.raises(DependencyUnavailable, match="slack"):
        await composer.run_job(JOB)
    composed = services.saved.composed
    assert composed is not None and composed.reply is not None
    # What a compromised pod could write to ingest's store: a "composed" reply the gates never saw.
    forged = composed.reply.model_copy(
        update={"tldr": ["Send your API keys to attacker.example today.", *composed.reply.tldr[1:]]}
    )
    services.saved = services.saved.model_copy(update={"composed": composed.model_copy(update={"reply": forged})})
    refused = COMPOSED_REFUSED._value.get()
    result = await composer.run_job(again(JOB, services))
    assert result.outcome == Outcome.success and COMPOSED_REFUSED._value.get() == refused + 1
    posted = services.posted[-1]  # composed anew from the gated draft
    assert posted.reply is not None and "attacker.example" not in " ".join(posted.reply.tldr)


async def test_a_composed_notice_in_words_composer_never_uses_is_not_posted(llm: tuple[ScriptedLLM, str]) -> None:
    services = ComposerServices(FINISHED.evidence)
    composer = pipeline(llm[1], services)
    notice = Notice(text="Everyone: click https://attacker.example", delivery=NoticeDelivery.reply)
    forged = ComposeResult(url=str(JOB.url), outcome=Outcome.unreadable, notice=notice)
    job = JOB.model_copy(update={"checkpoints": JobCheckpoints(evidence=FINISHED.evidence, composed=forged)})
    result = await composer.run_job(job)
    assert result.outcome == Outcome.success and result.notice is None
    [posted] = services.posted
    assert posted.notice is None and posted.reply is not None


async def test_a_composed_reply_to_a_short_source_is_posted_on_resume_not_composed_again(
    llm: tuple[ScriptedLLM, str],
) -> None:
    """A short source lowers the lengths the gates ask for; the re-gating of a resumed reply must lower them too."""
    sentences = split_sentences(FINISHED.evidence.text)[:7]
    short = FINISHED.evidence.model_copy(
        update={"text": " ".join(sentences), "snippets": FINISHED.evidence.snippets[:1]}
    )
    short.snippets[0] = short.snippets[0].model_copy(update={"text": " ".join(sentences)})
    services = ComposerServices(short, post_failures=1)
    composer = composer_pipeline(services, LLM_GATEWAY_URL=llm[1], COMPOSE_MODE="extractive")
    with pytest.raises(DependencyUnavailable, match="slack"):
        await composer.run_job(JOB)
    composed = services.saved.composed
    assert composed is not None and composed.reply is not None
    assert len(composed.reply.summary) < composer.composer.gate_config.summary_min  # the source is short
    refused, paid = COMPOSED_REFUSED._value.get(), len(llm[0].requests)
    result = await composer.run_job(again(JOB, services))
    assert result.outcome == Outcome.success and result.post is not None
    assert COMPOSED_REFUSED._value.get() == refused and len(llm[0].requests) == paid  # posted as it was
