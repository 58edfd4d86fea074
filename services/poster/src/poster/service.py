"""Exactly one answer per job (a reply, a notice or a reaction), however many times composer asks."""

import asyncio
import logging
from enum import StrEnum
from typing import Any

from prometheus_client import Counter

from poster.settings import PosterSettings
from poster.slack import REPLY_EVENT_TYPE, SlackPoster, SlackPostError
from poster.store import UNCERTAIN, PostState, PostStore
from technoshare_common.schemas import NoticeDelivery, PostStatus, ReplyRequest, ReplyResult
from technoshare_common.slack_format import (
    SLACK_SECTION_LIMIT,
    context_block,
    escape,
    render_blocks,
    render_text,
    source_line,
)

log = logging.getLogger(__name__)

POSTS = Counter(
    "technoshare_slack_posts_total",
    "Post requests, by what became of them and their kind (reply, notice, reaction, none).",
    ["status", "error", "kind"],
)


class Kind(StrEnum):
    """What a request asks poster to do in Slack."""

    reply = "reply"  # the composed reply, in the thread
    notice = "notice"  # a short notice about an unreadable link, in the thread
    reaction = "reaction"  # an emoji on the shared message
    none = "none"  # nothing, deliberately


def kind_of(request: ReplyRequest) -> Kind:
    if request.notice is None:
        return Kind.reply
    return {
        NoticeDelivery.reply: Kind.notice,
        NoticeDelivery.reaction: Kind.reaction,
        NoticeDelivery.none: Kind.none,
    }[request.notice.delivery]


def build_payload(request: ReplyRequest) -> dict[str, Any]:
    """The arguments of the Slack call: reactions.add's for a reaction, chat.postMessage's otherwise."""
    if request.notice is not None and request.notice.delivery == NoticeDelivery.reaction:
        return {"channel": request.channel_id, "timestamp": request.message_ts, "name": request.notice.reaction}
    if request.notice is not None:
        text = escape(request.notice.text)  # composer's own wording, escaped anyway: nothing pings from here
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            context_block([source_line(request.source_url)]),
        ]
    else:
        assert request.reply is not None  # ReplyRequest holds exactly one of reply and notice
        text = render_text(request.reply)
        blocks = render_blocks(request.reply, request.source_url, request.coverage)
    return {
        "channel": request.channel_id,
        "thread_ts": request.thread_ts,
        "text": text,
        "blocks": blocks,
        # The same metadata for replies and notices: an interrupted attempt's message is found either way.
        "metadata": {"event_type": REPLY_EVENT_TYPE, "event_payload": {"job_id": request.job_id}},
        "unfurl_links": False,
        "unfurl_media": False,
    }


SHORTENED_NOTE = "\n\n_Shortened: the whole reply was too long for Slack._"


def shortened(payload: dict[str, Any]) -> dict[str, Any]:
    """The message cut to one Block Kit section, after a whole sentence, for Slack's `msg_too_long`: a shorter
    answer beats none. Its metadata stays, so a later attempt still finds it."""
    text = str(payload["text"])
    keep = SLACK_SECTION_LIMIT - len(SHORTENED_NOTE)
    cut = text
    if len(text) > keep:
        head = text[:keep]
        end = max(head.rfind(". "), head.rfind(".\n"))
        cut = head[: end + 1] if end > 0 else head.rsplit(" ", 1)[0]
    short = cut + SHORTENED_NOTE
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": short}}, *payload["blocks"][-1:]]
    return payload | {"text": short, "blocks": blocks}


class PosterService:
    def __init__(self, settings: PosterSettings, store: PostStore, slack: SlackPoster | None) -> None:
        self.settings = settings
        self.store = store
        self.slack = slack

    async def reply(self, request: ReplyRequest) -> ReplyResult:
        kind = kind_of(request)
        if kind == Kind.none:
            POSTS.labels(PostStatus.skipped.value, "", kind.value).inc()
            return ReplyResult(job_id=request.job_id, status=PostStatus.skipped, channel_id=request.channel_id)
        payload = build_payload(request)
        if self.slack is None:
            POSTS.labels(PostStatus.dry_run.value, "", kind.value).inc()
            return ReplyResult(
                job_id=request.job_id, status=PostStatus.dry_run, channel_id=request.channel_id, payload=payload
            )
        return await asyncio.to_thread(self._post_once, request, kind, payload, self.slack)

    def _post_once(self, request: ReplyRequest, kind: Kind, payload: dict[str, Any], slack: SlackPoster) -> ReplyResult:
        def result(status: PostStatus, **fields: Any) -> ReplyResult:
            POSTS.labels(status.value, fields.get("error") or "", kind.value).inc()
            return ReplyResult(job_id=request.job_id, status=status, channel_id=request.channel_id, **fields)

        claim = self.store.claim(
            request.job_id,
            request.channel_id,
            request.thread_ts,
            self.settings.claim_stale_seconds,
            self.settings.settle_seconds,
        )
        if claim.previous == PostState.posted:
            return result(PostStatus.already_posted, message_ts=claim.message_ts)
        if claim.settling:
            return result(
                PostStatus.failed, error="the last post got no clear answer; waiting to search", retryable=True
            )
        if not claim.acquired:
            return result(PostStatus.failed, error="another attempt is posting this job", retryable=True)
        try:
            if kind == Kind.reaction:
                # Slack itself refuses a second identical reaction, so an earlier attempt's is never doubled.
                added = slack.react(payload)
                self._record(self.store.mark_posted(request.job_id, claim.token, None))
                log.info("reaction added" if added else "reaction was there already", extra={"kind": kind.value})
                return result(PostStatus.reacted if added else PostStatus.already_posted)
            if claim.previous in UNCERTAIN:
                # An earlier attempt died mid-post or got no clear answer: the message may be in Slack already.
                found = slack.find_posted(request.channel_id, request.thread_ts, request.job_id)
                if found:
                    self._record(self.store.mark_posted(request.job_id, claim.token, found))
                    log.info("found the message an earlier attempt posted", extra={"message_ts": found})
                    return result(PostStatus.already_posted, message_ts=found)
            message_ts = self._post(slack, payload)
        except SlackPostError as exc:
            self._record(self.store.mark_failed(request.job_id, claim.token, exc.error, exc.maybe_posted))
            log.error(
                "posting failed",
                extra={"error": exc.error, "retryable": exc.retryable, "maybe_posted": exc.maybe_posted, "kind": kind},
            )
            return result(PostStatus.failed, error=exc.error, retryable=exc.retryable)
        self._record(self.store.mark_posted(request.job_id, claim.token, message_ts))
        log.info(f"{kind.value} posted", extra={"message_ts": message_ts, "channel_id": request.channel_id})
        return result(PostStatus.posted, message_ts=message_ts)

    @staticmethod
    def _post(slack: SlackPoster, payload: dict[str, Any]) -> str:
        try:
            return slack.post(payload)
        except SlackPostError as exc:
            if exc.error != "msg_too_long":
                raise
        log.warning("Slack found the message too long; posting it shortened")
        return slack.post(shortened(payload))

    @staticmethod
    def _record(held: bool) -> None:
        if not held:
            log.warning("this attempt's claim was taken over meanwhile; its record is the newer attempt's")
