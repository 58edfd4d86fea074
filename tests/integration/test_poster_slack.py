"""poster through slack_sdk against a local Slack Web API: once per job, whatever happens."""

import asyncio
import time

import pytest

from poster.service import PosterService, build_payload
from poster.settings import PosterSettings
from poster.slack import SlackPoster
from poster.store import PostStore
from technoshare_common.schemas import ComposedReply, PostStatus, ProjectLink, ReplyRequest
from tests.support.fake_slack import MISSING_CHANNEL, VALID_TOKEN, FakeSlack
from tests.support.servers import serve_in_thread


@pytest.fixture(scope="module")
def slack() -> FakeSlack:  # type: ignore[misc]
    fake = FakeSlack()
    with serve_in_thread(fake.app) as url:
        fake.url = url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def settings(slack: FakeSlack, database_url: str) -> PosterSettings:
    slack.reset()
    return PosterSettings(
        SLACK_BOT_TOKEN=VALID_TOKEN,
        SLACK_API_URL=f"{slack.url}/api/",
        POSTER_DATABASE_URL=database_url,  # type: ignore[attr-defined]
        POST_CLAIM_STALE_SECONDS=0.5,
    )


def _service(settings: PosterSettings) -> PosterService:
    store = PostStore(settings.database_url)
    store.create_schema()
    return PosterService(settings, store, SlackPoster(settings))


def _request(job_id: str = "job-1", channel: str = "C0CHAN") -> ReplyRequest:
    reply = ComposedReply(
        tldr=["One thing here.", "Two things here.", "Three things here."],
        summary=[f"Summary sentence {i} here." for i in range(10)],
        projects=[ProjectLink(theme="ML platform", relevance="It helps the platform team.")],
    )
    return ReplyRequest(
        job_id=job_id, channel_id=channel, thread_ts="1700000000.000100", source_url="https://x.example", reply=reply
    )


async def test_a_job_is_posted_once_however_often_it_is_asked(slack: FakeSlack, settings: PosterSettings) -> None:
    service = _service(settings)
    first = await service.reply(_request())
    second = await service.reply(_request())
    assert first.status == PostStatus.posted and second.status == PostStatus.already_posted
    assert first.message_ts == second.message_ts
    [message] = slack.messages
    assert message["thread_ts"] == "1700000000.000100"
    assert message["metadata"] == {"event_type": "technoshare_reply", "event_payload": {"job_id": "job-1"}}


async def test_rate_limits_are_waited_out_with_retry_after(slack: FakeSlack, settings: PosterSettings) -> None:
    slack.rate_limit_next = 1
    started = time.monotonic()
    result = await _service(settings).reply(_request("job-rl"))
    assert result.status == PostStatus.posted
    assert time.monotonic() - started >= 0.9  # Retry-After: 1
    assert slack.calls.count("chat.postMessage") == 2 and len(slack.messages) == 1


async def test_persistent_rate_limiting_is_a_retryable_failure(slack: FakeSlack, settings: PosterSettings) -> None:
    slack.rate_limit_next = 10
    result = await _service(settings.model_copy(update={"rate_limit_retries": 0})).reply(_request("job-rl2"))
    assert (result.status, result.error, result.retryable) == (PostStatus.failed, "ratelimited", True)
    slack.rate_limit_next = 0


async def test_channel_not_found_is_a_permanent_failure(slack: FakeSlack, settings: PosterSettings) -> None:
    result = await _service(settings).reply(_request("job-nf", channel=MISSING_CHANNEL))
    assert (result.status, result.error, result.retryable) == (PostStatus.failed, "channel_not_found", False)
    assert slack.messages == []


async def test_invalid_auth_is_a_permanent_failure(slack: FakeSlack, settings: PosterSettings) -> None:
    from pydantic import SecretStr

    bad = settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-revoked")})
    result = await _service(bad).reply(_request("job-auth"))
    assert (result.status, result.error, result.retryable) == (PostStatus.failed, "invalid_auth", False)


async def test_a_post_interrupted_after_slack_accepted_it_is_not_repeated(
    slack: FakeSlack, settings: PosterSettings
) -> None:
    service = _service(settings)
    request = _request("job-crash")
    # A previous poster claimed the job, posted it, and died before recording the ts.
    assert service.store.claim(request.job_id, request.channel_id, request.thread_ts, 60).acquired
    assert service.slack is not None
    service.slack.post(build_payload(request))
    assert (await service.reply(request)).status == PostStatus.failed  # claim still fresh: someone may be posting
    await asyncio.sleep(0.6)
    result = await service.reply(request)
    assert result.status == PostStatus.already_posted
    assert len(slack.messages) == 1 and result.message_ts == slack.messages[0]["ts"]


async def test_without_a_token_it_is_a_dry_run_returning_the_payload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = PosterSettings(POSTER_DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}")
    result = await PosterService(settings, PostStore(settings.database_url), None).reply(_request("job-dry"))
    assert result.status == PostStatus.dry_run
    assert result.payload is not None and result.payload["text"].startswith("*TL;DR*")
