"""POST /slack/events: the only public endpoint. It answers Slack fast and never loses an event."""

import asyncio
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from prometheus_client import Counter
from slack_sdk.signature import SignatureVerifier

from ingest.dependencies import get_dispatcher, get_feedback, get_settings, get_store
from ingest.dispatcher import Dispatcher
from ingest.feedback import FeedbackRecorder, Reaction, reaction_from
from ingest.settings import IngestSettings
from ingest.slack_events import ignore_reason, shared_links
from ingest.store import JobStore

log = logging.getLogger(__name__)
router = APIRouter()

SLACK_EVENTS = Counter("technoshare_slack_events_total", "Slack requests received, by what became of them.", ["result"])


@router.post("/slack/events")
async def slack_events(
    request: Request,
    settings: Annotated[IngestSettings, Depends(get_settings)],
    store: Annotated[JobStore, Depends(get_store)],
    dispatcher: Annotated[Dispatcher, Depends(get_dispatcher)],
    feedback: Annotated[FeedbackRecorder, Depends(get_feedback)],
) -> Response:
    body = await request.body()
    verifier = SignatureVerifier(settings.slack_signing_secret.get_secret_value())
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not timestamp or not signature or not verifier.is_valid(body, timestamp, signature):
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
    if (reaction := reaction_from(event)) is not None:
        return await _feedback(reaction, settings, store, feedback)
    reason = ignore_reason(event, settings.channel_id)
    if reason:
        SLACK_EVENTS.labels("ignored").inc()
        log.info("event ignored", extra={"reason": reason, "event_id": payload.get("event_id")})
        return Response(status_code=status.HTTP_200_OK)

    links = shared_links(event, settings.max_links_per_message)
    event_id = payload.get("event_id")
    created = 0
    for link in links:
        job_id, is_new = await asyncio.to_thread(store.enqueue, link, event_id)
        created += is_new
        log.info(
            "job accepted" if is_new else "duplicate link ignored",
            extra={"job_id": job_id, "url": link.url, "retry_num": request.headers.get("x-slack-retry-num")},
        )
    SLACK_EVENTS.labels("jobs_created" if created else "no_new_jobs").inc()
    if created:
        dispatcher.wake()
    return Response(status_code=status.HTTP_200_OK)


async def _feedback(
    reaction: Reaction, settings: IngestSettings, store: JobStore, feedback: FeedbackRecorder
) -> Response:
    verdict = settings.feedback_reactions.get(reaction.reaction)
    job = (
        await asyncio.to_thread(store.find_by_reply, reaction.channel_id, reaction.message_ts)
        if verdict is not None
        else None
    )
    if verdict is None or job is None:
        SLACK_EVENTS.labels("ignored").inc()
        return Response(status_code=status.HTTP_200_OK)
    job_id, trace_id = job
    feedback.record(job_id, trace_id, verdict, reaction)
    SLACK_EVENTS.labels("feedback").inc()
    return Response(status_code=status.HTTP_200_OK)
