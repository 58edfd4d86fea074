"""poster through slack_sdk against a local Slack Web API: once per job, whatever happens."""

import asyncio
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import update

from poster.main import build_app
from poster.service import PosterService, build_payload
from poster.settings import PosterSettings
from poster.slack import SlackPoster
from poster.store import PostState, PostStore, SlackPost
from technoshare_common.schemas import (
    ComposedReply,
    Notice,
    NoticeDelivery,
    PostStatus,
    ProjectLink,
    ReplyRequest,
    ReplyResult,
)
from tests.support.fake_slack import MISSING_CHANNEL, VALID_TOKEN, FakeSlack, Fault, FaultKind
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
        POST_SETTLE_SECONDS=0,  # the test that needs a settling time sets its own
    )


def _service(settings: PosterSettings) -> PosterService:
    store = PostStore(settings.database_url)
    store.create_schema()
    return PosterService(settings, store, SlackPoster(settings))


THREAD_TS = "1700000000.000100"
NOTICE_TEXT = "I could not read this link: the site answered 404 Not Found."


def _request(job_id: str = "job-1", channel: str = "C0CHAN", notes: tuple[str, ...] = ()) -> ReplyRequest:
    reply = ComposedReply(
        tldr=["One thing here.", "Two things here.", "Three things here."],
        summary=[f"Summary sentence {i} here." for i in range(10)],
        projects=[ProjectLink(theme="ML platform", relevance="It helps the platform team.")],
        notes=list(notes),
    )
    return ReplyRequest(
        job_id=job_id, channel_id=channel, thread_ts=THREAD_TS, source_url="https://x.example", reply=reply
    )


def _notice(job_id: str, delivery: NoticeDelivery = NoticeDelivery.reply, channel: str = "C0CHAN") -> ReplyRequest:
    return ReplyRequest(
        job_id=job_id,
        channel_id=channel,
        thread_ts=THREAD_TS,
        message_ts=THREAD_TS,
        source_url="https://dead.example/paper",
        notice=Notice(text=NOTICE_TEXT, delivery=delivery),
    )


def _posts(kind: str, status: PostStatus, error: str = "") -> float:
    labels = {"status": status.value, "error": error, "kind": kind}
    return REGISTRY.get_sample_value("technoshare_slack_posts_total", labels) or 0.0


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
    slack.inject(Fault(FaultKind.rate_limited, retry_after=1))
    started = time.monotonic()
    result = await _service(settings).reply(_request("job-rl"))
    assert result.status == PostStatus.posted
    assert time.monotonic() - started >= 0.9  # Retry-After: 1
    assert slack.calls.count("chat.postMessage") == 2 and len(slack.messages) == 1


async def test_persistent_rate_limiting_is_a_retryable_failure(slack: FakeSlack, settings: PosterSettings) -> None:
    slack.inject(Fault(FaultKind.rate_limited), times=10)
    result = await _service(settings.model_copy(update={"rate_limit_retries": 0})).reply(_request("job-rl2"))
    assert (result.status, result.error, result.retryable) == (PostStatus.failed, "ratelimited", True)


async def test_a_retry_after_longer_than_poster_waits_is_a_retryable_failure_at_once(
    slack: FakeSlack, settings: PosterSettings
) -> None:
    slack.inject(Fault(FaultKind.rate_limited, retry_after=3600))
    started = time.monotonic()
    result = await _service(settings).reply(_request("job-rl3"))
    assert (result.status, result.error, result.retryable) == (PostStatus.failed, "ratelimited", True)
    assert time.monotonic() - started < 60  # not an hour: the job's retry comes back later
    assert slack.calls == ["chat.postMessage"] and slack.messages == []
    assert (await _service(settings).reply(_request("job-rl3"))).status == PostStatus.posted  # nothing to search for
    assert slack.calls == ["chat.postMessage", "chat.postMessage"] and len(slack.messages) == 1


MAYBE_POSTED = [
    pytest.param(Fault(FaultKind.late, delay=3.0), id="accepted-answered-late"),
    pytest.param(Fault(FaultKind.reset), id="accepted-then-reset"),
    pytest.param(Fault(FaultKind.server_error, status=503), id="accepted-then-503"),
]


@pytest.mark.parametrize("fault", MAYBE_POSTED)
async def test_a_post_slack_may_have_taken_is_looked_for_before_the_next_attempt_posts(
    slack: FakeSlack, settings: PosterSettings, fault: Fault
) -> None:
    service = _service(settings.model_copy(update={"slack_timeout_seconds": 1.0}))
    slack.inject(fault)
    first = await service.reply(_request("job-maybe"))
    assert (first.status, first.retryable) == (PostStatus.failed, True)
    # Never re-sent by the client: one chat.postMessage, whatever became of it.
    assert slack.calls == ["chat.postMessage"] and len(slack.messages) == 1
    second = await service.reply(_request("job-maybe"))
    assert (second.status, second.message_ts) == (PostStatus.already_posted, slack.messages[0]["ts"])
    assert slack.calls == ["chat.postMessage", "conversations.replies"]
    assert (await service.reply(_request("job-maybe"))).status == PostStatus.already_posted
    assert len(slack.messages) == 1


async def test_a_post_slack_takes_after_the_client_gave_up_is_found_once_it_has_settled(
    slack: FakeSlack, settings: PosterSettings
) -> None:
    """Slack takes the request 2 s late, after a 1 s timeout: a search at once would miss it and post twice."""
    service = _service(settings.model_copy(update={"slack_timeout_seconds": 1.0, "settle_seconds": 3.0}))
    slack.inject(Fault(FaultKind.accepted_late, delay=2.0))
    assert (await service.reply(_request("job-settle"))).status == PostStatus.failed
    too_soon = await service.reply(_request("job-settle"))
    assert (too_soon.status, too_soon.retryable) == (PostStatus.failed, True)
    assert "conversations.replies" not in slack.calls  # no search while Slack may still be taking the post
    result = await _until_not_retryable(service, _request("job-settle"))
    assert result.status == PostStatus.already_posted and len(slack.messages) == 1
    assert slack.calls.count("chat.postMessage") == 1


async def _until_not_retryable(service: PosterService, request: ReplyRequest) -> ReplyResult:
    """The job's next attempts, as ingest's retries make them, until one is no longer a retryable failure."""
    deadline = time.monotonic() + 30
    while True:
        result = await service.reply(request)
        if result.status != PostStatus.failed or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)  # the retry's backoff, not a wait for a condition


async def test_a_5xx_before_slack_took_the_post_is_posted_by_the_next_attempt(
    slack: FakeSlack, settings: PosterSettings
) -> None:
    service = _service(settings)
    slack.inject(Fault(FaultKind.server_error, status=502, accept=False))
    first = await service.reply(_request("job-502"))
    assert (first.status, first.retryable, slack.messages) == (PostStatus.failed, True, [])
    second = await service.reply(_request("job-502"))
    assert second.status == PostStatus.posted
    assert slack.calls == ["chat.postMessage", "conversations.replies", "chat.postMessage"]
    assert len(slack.messages) == 1


async def test_no_post_while_the_thread_cannot_be_searched(slack: FakeSlack, settings: PosterSettings) -> None:
    service = _service(settings.model_copy(update={"slack_timeout_seconds": 1.0}))
    slack.inject(Fault(FaultKind.reset))
    assert (await service.reply(_request("job-blind"))).status == PostStatus.failed
    for fault in (
        Fault(FaultKind.reset, method="conversations.replies"),
        Fault(FaultKind.server_error, method="conversations.replies", accept=False),
    ):
        slack.inject(fault)
        result = await service.reply(_request("job-blind"))
        assert (result.status, result.retryable) == (PostStatus.failed, True)
        assert slack.calls.count("chat.postMessage") == 1
    assert (await service.reply(_request("job-blind"))).status == PostStatus.already_posted
    assert len(slack.messages) == 1


async def test_a_reply_slack_finds_too_long_is_posted_shortened_once(
    slack: FakeSlack, settings: PosterSettings
) -> None:
    slack.max_text_chars = 3500
    long_reply = _request("job-long").model_copy(deep=True)
    assert long_reply.reply is not None
    long_reply.reply.summary = [f"Summary sentence {i} says a great deal about this link. " * 6 for i in range(15)]
    result = await _service(settings).reply(long_reply)
    assert result.status == PostStatus.posted
    [message] = slack.messages
    assert len(message["text"]) <= 3500 and message["text"].startswith("*TL;DR*")
    assert message["text"].endswith("this link.\n\n_Shortened: the whole reply was too long for Slack._")
    assert message["metadata"]["event_payload"] == {"job_id": "job-long"}
    assert slack.calls == ["chat.postMessage", "chat.postMessage"]


def test_a_stale_attempt_cannot_overwrite_the_attempt_that_took_its_claim_over(settings: PosterSettings) -> None:
    store = PostStore(settings.database_url)
    store.create_schema()
    first = store.claim("job-fence", "C0CHAN", THREAD_TS, stale_after=60)
    second = store.claim("job-fence", "C0CHAN", THREAD_TS, stale_after=0)  # the first holder counts as dead
    assert first.acquired and second.acquired and first.token != second.token
    assert store.mark_posted("job-fence", second.token, "1700000000.000200")
    assert not store.mark_failed("job-fence", first.token, "TimeoutError", maybe_posted=True)
    assert not store.mark_posted("job-fence", first.token, "1700000000.000300")
    again = store.claim("job-fence", "C0CHAN", THREAD_TS, stale_after=60)
    assert (again.acquired, again.previous, again.message_ts) == (False, PostState.posted, "1700000000.000200")


async def test_channel_not_found_is_a_permanent_failure(slack: FakeSlack, settings: PosterSettings) -> None:
    result = await _service(settings).reply(_request("job-nf", channel=MISSING_CHANNEL))
    assert (result.status, result.error, result.retryable) == (PostStatus.failed, "channel_not_found", False)
    assert slack.messages == []


async def test_invalid_auth_is_a_permanent_failure(slack: FakeSlack, settings: PosterSettings) -> None:
    from pydantic import SecretStr

    bad = settings.model_copy(update={"slack_bot_token": SecretStr("xoxb-revoked")})
    result = await _service(bad).reply(_request("job-auth"))
    assert (result.status, result.error, result.retryable) == (PostStatus.failed, "invalid_auth", False)


@pytest.mark.parametrize("make_request", [_request, _notice], ids=["reply", "notice"])
async def test_a_post_interrupted_after_slack_accepted_it_is_not_repeated(
    slack: FakeSlack, settings: PosterSettings, make_request: Callable[[str], ReplyRequest]
) -> None:
    service = _service(settings.model_copy(update={"claim_stale_seconds": 60.0}))
    request = make_request("job-crash")
    # A previous poster claimed the job, posted it, and died before recording the ts.
    assert service.store.claim(request.job_id, request.channel_id, request.thread_ts, 60).acquired
    assert service.slack is not None
    service.slack.post(build_payload(request))
    assert (await service.reply(request)).status == PostStatus.failed  # claim still fresh: someone may be posting
    with service.store.engine.begin() as conn:  # its holder is gone long enough for the claim to go stale
        conn.execute(update(SlackPost).where(SlackPost.job_id == request.job_id).values(claimed_at=time.time() - 120))
    result = await service.reply(request)
    assert result.status == PostStatus.already_posted
    assert len(slack.messages) == 1 and result.message_ts == slack.messages[0]["ts"]


async def test_without_a_token_it_is_a_dry_run_returning_the_payload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = PosterSettings(POSTER_DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}")
    service = PosterService(settings, PostStore(settings.database_url), None)
    result = await service.reply(_request("job-dry"))
    assert result.status == PostStatus.dry_run
    assert result.payload is not None and result.payload["text"].startswith("*TL;DR*")
    notice = await service.reply(_notice("job-dry-notice"))
    assert notice.status == PostStatus.dry_run and notice.payload is not None
    assert (notice.payload["thread_ts"], notice.payload["text"]) == (THREAD_TS, NOTICE_TEXT)
    reaction = await service.reply(_notice("job-dry-reaction", NoticeDelivery.reaction))
    assert reaction.status == PostStatus.dry_run
    assert reaction.payload == {"channel": "C0CHAN", "timestamp": THREAD_TS, "name": "warning"}


async def test_a_degraded_replys_note_is_shown_under_it(slack: FakeSlack, settings: PosterSettings) -> None:
    note = "Quoted from the source: the language model was unavailable."
    result = await _service(settings).reply(_request("job-degraded", notes=(note,)))
    assert result.status == PostStatus.posted
    [message] = slack.messages
    assert message["text"].endswith(f"\n\n\n_{note}_")
    context = message["blocks"][-1]
    assert context["type"] == "context" and f"_{note}_" in context["elements"][0]["text"]
    assert "Source: <https://x.example>" in context["elements"][0]["text"]


async def test_a_notice_is_posted_once_in_the_thread(slack: FakeSlack, settings: PosterSettings) -> None:
    service = _service(settings)
    first = await service.reply(_notice("job-notice"))
    second = await service.reply(_notice("job-notice"))
    assert (first.status, second.status) == (PostStatus.posted, PostStatus.already_posted)
    assert first.message_ts is not None and first.message_ts == second.message_ts
    [message] = slack.replies_in("C0CHAN", THREAD_TS)
    assert message["text"] == NOTICE_TEXT
    assert message["metadata"] == {"event_type": "technoshare_reply", "event_payload": {"job_id": "job-notice"}}
    assert message["blocks"][-1]["elements"][0]["text"] == "Source: <https://dead.example/paper>"
    assert slack.calls.count("chat.postMessage") == 1


async def test_a_reaction_is_added_once(slack: FakeSlack, settings: PosterSettings) -> None:
    service = _service(settings)
    reacted_before = _posts("reaction", PostStatus.reacted)
    first = await service.reply(_notice("job-react", NoticeDelivery.reaction))
    second = await service.reply(_notice("job-react", NoticeDelivery.reaction))
    assert (first.status, second.status) == (PostStatus.reacted, PostStatus.already_posted)
    # The shared message is the user's, not a reply: feedback on it must not count as feedback on a reply.
    assert first.message_ts is None and second.message_ts is None
    assert slack.reactions == [("C0CHAN", THREAD_TS, "warning")]
    assert slack.calls == ["reactions.add"] and slack.messages == []
    assert _posts("reaction", PostStatus.reacted) == reacted_before + 1


async def test_already_reacted_from_slack_means_done(slack: FakeSlack, settings: PosterSettings) -> None:
    service = _service(settings)
    request = _notice("job-reacted", NoticeDelivery.reaction)
    # An earlier attempt's reaction reached Slack, but the attempt failed (say, a timeout on Slack's answer).
    claim = service.store.claim(request.job_id, request.channel_id, request.thread_ts, 60)
    assert claim.acquired
    assert service.slack is not None
    service.slack.react(build_payload(request))
    service.store.mark_failed(request.job_id, claim.token, "request_timeout", maybe_posted=True)
    result = await service.reply(request)
    assert (result.status, result.error) == (PostStatus.already_posted, None)
    assert (await service.reply(request)).status == PostStatus.already_posted
    assert slack.reactions == [("C0CHAN", THREAD_TS, "warning")]
    assert slack.calls.count("reactions.add") == 2


async def test_a_reaction_on_a_missing_channel_is_a_permanent_failure(
    slack: FakeSlack, settings: PosterSettings
) -> None:
    result = await _service(settings).reply(_notice("job-react-nf", NoticeDelivery.reaction, channel=MISSING_CHANNEL))
    assert (result.status, result.error, result.retryable) == (PostStatus.failed, "channel_not_found", False)


async def test_a_notice_delivered_as_none_posts_nothing(slack: FakeSlack, settings: PosterSettings) -> None:
    result = await _service(settings).reply(_notice("job-quiet", NoticeDelivery.none))
    assert (result.status, result.message_ts, result.payload) == (PostStatus.skipped, None, None)
    assert slack.calls == [] and slack.messages == [] and slack.reactions == []


@pytest.fixture
def api(settings: PosterSettings) -> TestClient:  # type: ignore[misc]
    with TestClient(build_app(settings)) as client:
        yield client


def _body(**answer: object) -> dict[str, object]:
    job = {"job_id": "job-api", "channel_id": "C0CHAN", "thread_ts": THREAD_TS, "source_url": "https://x.example"}
    return job | answer


REPLY_BODY = {"tldr": ["One thing here."], "summary": ["A sentence here."], "projects": []}


@pytest.mark.parametrize(
    "answer,why",
    [
        ({}, "give exactly one of 'reply' or 'notice'"),
        (
            {"reply": REPLY_BODY, "notice": {"text": NOTICE_TEXT, "delivery": "reply"}},
            "give exactly one of 'reply' or 'notice'",
        ),
        ({"notice": {"text": NOTICE_TEXT, "delivery": "reaction"}}, "needs 'message_ts'"),
        (
            {"notice": {"text": NOTICE_TEXT, "delivery": "reaction", "reaction": ":warning:"}, "message_ts": "1.2"},
            "pattern",
        ),
    ],
    ids=["neither", "both", "reaction-without-message", "emoji-with-colons"],
)
def test_the_api_refuses_a_request_that_does_not_say_one_thing_to_do(
    api: TestClient, slack: FakeSlack, answer: dict[str, object], why: str
) -> None:
    response = api.post("/v1/replies", json=_body(**answer))
    assert response.status_code == 422
    assert why in response.text
    assert slack.calls == []


def test_the_api_still_takes_a_reply_without_the_new_fields(api: TestClient, slack: FakeSlack) -> None:
    response = api.post("/v1/replies", json=_body(reply=REPLY_BODY))
    assert response.status_code == 200 and response.json()["status"] == "posted"
    assert len(slack.messages) == 1
