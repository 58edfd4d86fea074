"""Reactions on the bot's replies as quality feedback: counted in Prometheus, logged on the job's trace."""

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from technoshare_common.background import BackgroundSender
from technoshare_common.redaction import user_pseudonym
from technoshare_common.tracing import use_tracking_uri

log = logging.getLogger(__name__)

FEEDBACK = Counter(
    "technoshare_feedback_total", "Reactions on the bot's replies, by reaction and verdict.", ["reaction", "verdict"]
)
LIVE_FEEDBACK = Counter(
    "technoshare_live_feedback_total",
    "Votes on the bot's replies by channel and by the app version that made the reply (technoshare_live_* series).",
    ["channel", "app_version", "verdict"],
)
FEEDBACK_NAME = "user_reaction"


@dataclass(frozen=True)
class Reaction:
    channel_id: str
    message_ts: str
    reaction: str
    user: str  # the reacting user's pseudonym (redaction.user_pseudonym): MLflow never sees a Slack id


def reaction_from(event: dict[str, Any], user_key: str = "") -> Reaction | None:
    """A `reaction_added` event on a message, or None for anything else; `user_key` keys the user's pseudonym."""
    item = event.get("item") or {}
    if event.get("type") != "reaction_added" or item.get("type") != "message":
        return None
    if not item.get("channel") or not item.get("ts") or not event.get("reaction"):
        return None
    # Skin tones ("+1::skin-tone-3") are the same verdict.
    user = user_pseudonym(str(event.get("user") or ""), user_key)
    return Reaction(item["channel"], item["ts"], str(event["reaction"]).split("::")[0], user)


class FeedbackRecorder:
    """Sends feedback to MLflow from a worker thread: Slack's 3-second ack never waits for MLflow."""

    def __init__(self, tracking_uri: str | None, reactions: dict[str, bool] | None = None) -> None:
        self.tracking_uri = tracking_uri
        for reaction, verdict in (reactions or {}).items():  # each series from 0: the first vote shows in rate()
            FEEDBACK.labels(reaction, "positive" if verdict else "negative")
        self._sender: BackgroundSender[tuple[str, str, bool, Reaction]] = BackgroundSender(
            "mlflow-feedback", self._send
        )

    def record(
        self, job_id: str, trace_id: str | None, verdict: bool, reaction: Reaction, app_version: str | None = None
    ) -> None:
        FEEDBACK.labels(reaction.reaction, "positive" if verdict else "negative").inc()
        version = app_version or "unknown"
        for value in ("positive", "negative"):  # both from the first vote, so a first thumbs-down shows in rate()
            LIVE_FEEDBACK.labels(reaction.channel_id, version, value)
        LIVE_FEEDBACK.labels(reaction.channel_id, version, "positive" if verdict else "negative").inc()
        log.info("feedback on a reply", extra={"job_id": job_id, "reaction": reaction.reaction, "positive": verdict})
        if self.tracking_uri and trace_id:
            self._sender.submit((self.tracking_uri, trace_id, verdict, reaction))

    def _send(self, item: tuple[str, str, bool, Reaction]) -> None:
        import mlflow
        from mlflow.entities import AssessmentSource, AssessmentSourceType

        tracking_uri, trace_id, verdict, reaction = item
        use_tracking_uri(tracking_uri)
        mlflow.log_feedback(
            trace_id=trace_id,
            name=FEEDBACK_NAME,
            value=verdict,
            source=AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=reaction.user or "slack"),
            rationale=f":{reaction.reaction}: in Slack",
        )
