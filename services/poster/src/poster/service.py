"""Exactly one reply per job, however many times composer asks."""

import asyncio
import logging
from typing import Any

from prometheus_client import Counter

from poster.settings import PosterSettings
from poster.slack import REPLY_EVENT_TYPE, SlackPoster, SlackPostError
from poster.store import PostState, PostStore
from technoshare_common.schemas import PostStatus, ReplyRequest, ReplyResult
from technoshare_common.slack_format import render_blocks, render_text

log = logging.getLogger(__name__)

POSTS = Counter("technoshare_slack_posts_total", "Reply requests, by what became of them.", ["status", "error"])


def build_payload(request: ReplyRequest) -> dict[str, Any]:
    return {
        "channel": request.channel_id,
        "thread_ts": request.thread_ts,
        "text": render_text(request.reply),
        "blocks": render_blocks(request.reply, request.source_url, request.coverage),
        "metadata": {"event_type": REPLY_EVENT_TYPE, "event_payload": {"job_id": request.job_id}},
        "unfurl_links": False,
        "unfurl_media": False,
    }


class PosterService:
    def __init__(self, settings: PosterSettings, store: PostStore, slack: SlackPoster | None) -> None:
        self.settings = settings
        self.store = store
        self.slack = slack

    async def reply(self, request: ReplyRequest) -> ReplyResult:
        payload = build_payload(request)
        if self.slack is None:
            POSTS.labels(PostStatus.dry_run.value, "").inc()
            return ReplyResult(
                job_id=request.job_id, status=PostStatus.dry_run, channel_id=request.channel_id, payload=payload
            )
        return await asyncio.to_thread(self._post_once, request, payload, self.slack)

    def _post_once(self, request: ReplyRequest, payload: dict[str, Any], slack: SlackPoster) -> ReplyResult:
        def result(status: PostStatus, **fields: Any) -> ReplyResult:
            POSTS.labels(status.value, fields.get("error") or "").inc()
            return ReplyResult(job_id=request.job_id, status=status, channel_id=request.channel_id, **fields)

        claim = self.store.claim(
            request.job_id, request.channel_id, request.thread_ts, self.settings.claim_stale_seconds
        )
        if claim.previous == PostState.posted:
            return result(PostStatus.already_posted, message_ts=claim.message_ts)
        if not claim.acquired:
            return result(PostStatus.failed, error="another attempt is posting this job", retryable=True)
        try:
            if claim.previous == PostState.claimed:
                # The last holder died mid-post: the reply may be in Slack already.
                found = slack.find_posted(request.channel_id, request.thread_ts, request.job_id)
                if found:
                    self.store.mark_posted(request.job_id, found)
                    log.info("found the reply an interrupted attempt posted", extra={"message_ts": found})
                    return result(PostStatus.already_posted, message_ts=found)
            message_ts = slack.post(payload)
        except SlackPostError as exc:
            self.store.mark_failed(request.job_id, exc.error)
            log.error("posting failed", extra={"error": exc.error, "retryable": exc.retryable})
            return result(PostStatus.failed, error=exc.error, retryable=exc.retryable)
        self.store.mark_posted(request.job_id, message_ts)
        log.info("reply posted", extra={"message_ts": message_ts, "channel_id": request.channel_id})
        return result(PostStatus.posted, message_ts=message_ts)
