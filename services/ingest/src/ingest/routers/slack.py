"""POST /slack/events: the only public endpoint. It answers Slack fast and never loses an event."""

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import Counter
from slack_sdk.signature import SignatureVerifier

from ingest.ack import AckStore, StoreUnavailable
from ingest.dispatcher import Dispatcher
from ingest.feedback import FeedbackRecorder, Reaction, reaction_from
from ingest.settings import IngestSettings
from ingest.slack_events import ignore_reason, shared_links
from ingest.store import JobStore

log = logging.getLogger(__name__)
router = APIRouter()

SLACK_EVENTS = Counter("technoshare_slack_events_total", "Slack requests received, by what became of them.", ["result"])


LINKS_REFUSED = Counter(
    "technoshare_links_refused_total",
    "Shared links that can never be fetched (malformed, a port out of range, over 2048 characters): answered with "
    "the unreadable notice, never handed to retrieval.",
)
PUBLIC_PATHS = frozenset({"/slack/events"})  # called by Slack, not by the services: see create_app


@router.post("/slack/events")
async def slack_events(request: Request) -> Response:
    # The app's objects straight from its state, not as FastAPI dependencies: solving six of them was a third of
    # an ack's CPU time, and at 500 requests/s the ack path is CPU-bound (docs/benchmarks.md).
    state = request.app.state
    settings: IngestSettings = state.settings
    store: JobStore = state.store
    dispatcher: Dispatcher | None = state.dispatcher
    feedback: FeedbackRecorder = state.feedback
    acks: AckStore = state.ack_store
    body = await _read_capped(request, settings.max_body_bytes)
    verifier = SignatureVerifier(settings.signing_secret())
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    # slack_sdk's verifier raises on a timestamp that is not a number: that is a bad request, not a server error.
    numeric = timestamp.isascii() and timestamp.isdigit()
    if not numeric or not signature or not verifier.is_valid(body, timestamp, signature):
        SLACK_EVENTS.labels("bad_signature").inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="invalid Slack signature or stale timestamp")
    try:
        payload: dict[str, Any] = json.loads(body)
    except ValueError as exc:
        SLACK_EVENTS.labels("bad_payload").inc()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="body is not JSON") from exc

    kind = payload.get("type")
    if kind == "url_verification":
        SLACK_EVENTS.labels("url_verification").inc()
        return Response(json.dumps({"challenge": payload.get("challenge", "")}), media_type="application/json")
    if kind != "event_callback" or not isinstance(payload.get("event"), dict):
        SLACK_EVENTS.labels("ignored").inc()
        return Response(status_code=status.HTTP_200_OK)

    event = payload["event"]
    if (reaction := reaction_from(event, settings.signing_secret())) is not None:
        return await _feedback(reaction, settings, store, feedback, acks)
    reason = ignore_reason(event, settings.channel_id)
    if reason:
        SLACK_EVENTS.labels("ignored").inc()
        log.info("event ignored", extra={"reason": reason, "event_id": payload.get("event_id")})
        return Response(status_code=status.HTTP_200_OK)

    links, refused = shared_links(event, settings.max_links_per_message, settings.signing_secret())
    event_id = payload.get("event_id")
    deadline = asyncio.get_running_loop().time() + settings.ack_store_timeout_seconds  # for the whole message
    # A refused link is a job too, one that gets the unreadable notice and is never fetched. All of a message's links
    # go to the store at once, so they share one insert.
    jobs = [*((link, None) for link in links), *refused.items()]
    stored = await asyncio.gather(
        *(acks.enqueue(link, event_id, problem, deadline=deadline) for link, problem in jobs), return_exceptions=True
    )
    if failure := next((result for result in stored if isinstance(result, BaseException)), None):
        if isinstance(failure, StoreUnavailable):
            SLACK_EVENTS.labels("store_unavailable").inc()  # Slack delivers it again; links stored already dedup
        raise failure
    created = 0
    for (link, problem), (job_id, is_new) in zip(jobs, stored, strict=True):  # type: ignore[misc]
        created += is_new
        if problem is not None and is_new:
            LINKS_REFUSED.inc()
            log.warning("link refused", extra={"job_id": job_id, "url": link.url[:200], "reason": problem})
        log.info(
            "job accepted" if is_new else "duplicate link ignored",
            extra={"job_id": job_id, "url": link.url[:200], "retry_num": request.headers.get("x-slack-retry-num")},
        )
    SLACK_EVENTS.labels("jobs_created" if created else "no_new_jobs").inc()
    if created and dispatcher is not None:
        dispatcher.wake()
    return Response(status_code=status.HTTP_200_OK)


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over `limit`: by its header, or while streaming."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        SLACK_EVENTS.labels("too_large").inc()
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            SLACK_EVENTS.labels("too_large").inc()
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _feedback(
    reaction: Reaction,
    settings: IngestSettings,
    store: JobStore,
    feedback: FeedbackRecorder,
    acks: AckStore,
) -> Response:
    verdict = settings.feedback_reactions.get(reaction.reaction)
    try:
        known = verdict is not None
        job = await acks.call(store.find_by_reply, reaction.channel_id, reaction.message_ts) if known else None
    except StoreUnavailable:
        SLACK_EVENTS.labels("store_unavailable").inc()
        raise
    if verdict is None or job is None:
        SLACK_EVENTS.labels("ignored").inc()
        return Response(status_code=status.HTTP_200_OK)
    feedback.record(job.id, job.trace_id, verdict, reaction, job.app_version)
    SLACK_EVENTS.labels("feedback").inc()
    return Response(status_code=status.HTTP_200_OK)
