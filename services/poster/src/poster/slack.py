"""Posting and reacting through slack_sdk, with Slack's errors sorted into 'retry later' and 'will never work'."""

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from poster.settings import PosterSettings

log = logging.getLogger(__name__)

REPLY_EVENT_TYPE = "technoshare_reply"

# Errors a later attempt can get past; everything else (channel_not_found, invalid_auth,
# not_in_channel, missing_scope, ...) needs a person to fix the configuration.
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)


class SlackPostError(Exception):
    def __init__(self, error: str, retryable: bool) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable


def _api_error(exc: SlackApiError) -> SlackPostError:
    error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
    return SlackPostError(error, error in RETRYABLE_ERRORS or exc.response.status_code >= 500)


def _client_error(exc: Exception) -> SlackPostError:
    """No answer from Slack (connection, timeout): worth another attempt."""
    return SlackPostError(f"{type(exc).__name__}: {exc}", retryable=True)


class SlackPoster:
    def __init__(self, settings: PosterSettings) -> None:
        assert settings.slack_bot_token is not None
        self.client = WebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            timeout=settings.slack_timeout_seconds,
            retry_handlers=[
                ConnectionErrorRetryHandler(max_retry_count=2),
                RateLimitErrorRetryHandler(max_retry_count=settings.rate_limit_retries),
            ],
        )

    def post(self, payload: dict[str, Any]) -> str:
        """Post and return the message ts."""
        try:
            response = self.client.chat_postMessage(**payload)
        except SlackApiError as exc:
            raise _api_error(exc) from exc
        except (SlackClientError, OSError) as exc:
            raise _client_error(exc) from exc
        return str(response["ts"])

    def react(self, payload: dict[str, Any]) -> bool:
        """Add the reaction; False when Slack says it is there already (an earlier attempt added it)."""
        try:
            self.client.reactions_add(**payload)
        except SlackApiError as exc:
            if exc.response.get("error") == "already_reacted":
                return False
            raise _api_error(exc) from exc
        except (SlackClientError, OSError) as exc:
            raise _client_error(exc) from exc
        return True

    def find_posted(self, channel_id: str, thread_ts: str, job_id: str) -> str | None:
        """The ts of this job's reply or notice if an interrupted attempt did post it (found by message metadata)."""
        try:
            cursor = None
            while True:
                response = self.client.conversations_replies(
                    channel=channel_id, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor
                )
                messages: list[dict[str, Any]] = response.get("messages") or []
                for message in messages:
                    metadata = message.get("metadata") or {}
                    if (
                        metadata.get("event_type") == REPLY_EVENT_TYPE
                        and (metadata.get("event_payload") or {}).get("job_id") == job_id
                    ):
                        return str(message["ts"])
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return None
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown")
            raise SlackPostError(f"cannot check the thread for an earlier reply: {error}", retryable=True) from exc
