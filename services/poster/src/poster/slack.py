"""Slack calls through slack_sdk, each failure sorted by two questions: may Slack have done it anyway, and can a
later attempt get past it."""

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse

from poster.settings import PosterSettings

log = logging.getLogger(__name__)

REPLY_EVENT_TYPE = "technoshare_reply"

# Errors a later attempt can get past; everything else (channel_not_found, invalid_auth,
# not_in_channel, missing_scope, ...) needs a person to fix the configuration.
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)
# Slack's words for "something went wrong on our side, part of the call may have happened".
MAYBE_DONE_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable"})


class SlackPostError(Exception):
    """`maybe_posted`: the call may have reached Slack and taken effect (a timeout, a dropped connection, a 5xx),
    so the next attempt looks for the message before posting."""

    def __init__(self, error: str, retryable: bool, maybe_posted: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable
        self.maybe_posted = maybe_posted


def _api_error(exc: SlackApiError) -> SlackPostError:
    status = exc.response.status_code
    error = str(exc.response.get("error") or f"HTTP {status}") if isinstance(exc.response.data, dict) else ""
    error = error or f"HTTP {status}"
    maybe = status >= 500 or error in MAYBE_DONE_ERRORS
    return SlackPostError(error, retryable=maybe or error in RETRYABLE_ERRORS, maybe_posted=maybe)


def _no_answer(exc: Exception) -> SlackPostError:
    """No (whole) answer: a timeout, a reset, a truncated body. The request may have been taken."""
    return SlackPostError(f"{type(exc).__name__}: {exc}"[:300], retryable=True, maybe_posted=True)


class _BoundedRateLimitRetry(RateLimitErrorRetryHandler):
    """Waits out a 429's Retry-After only when it is short: a long one frees the worker, and the job's own retry
    comes back later. A 429 means Slack did nothing, so waiting and re-sending can never double a post."""

    def __init__(self, max_retry_count: int, max_wait_seconds: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_seconds = max_wait_seconds

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = next((values[0] for name, values in response.headers.items() if name.lower() == "retry-after"), "1")
        try:
            return float(wait) <= self.max_wait_seconds
        except ValueError:
            return False


class SlackPoster:
    def __init__(self, settings: PosterSettings) -> None:
        assert settings.slack_bot_token is not None
        # No retry on a connection error: for chat.postMessage the client cannot know whether Slack took the
        # first request, and a blind re-send is a double reply. The job's next attempt searches first instead.
        self.client = WebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            timeout=settings.slack_timeout_seconds,  # type: ignore[arg-type]  # urllib takes a float
            retry_handlers=[_BoundedRateLimitRetry(settings.rate_limit_retries, settings.rate_limit_max_wait_seconds)],
        )

    @staticmethod
    def _call(method: Callable[..., SlackResponse], **arguments: Any) -> SlackResponse:
        try:
            return method(**arguments)
        except SlackApiError as exc:
            raise _api_error(exc) from exc
        except Exception as exc:  # urllib's whole range: timeouts, resets, IncompleteRead, URLError
            raise _no_answer(exc) from exc

    def post(self, payload: dict[str, Any]) -> str:
        """Post and return the message ts."""
        return str(self._call(self.client.chat_postMessage, **payload)["ts"])

    def react(self, payload: dict[str, Any]) -> bool:
        """Add the reaction; False when Slack says it is there already (an earlier attempt added it)."""
        try:
            self._call(self.client.reactions_add, **payload)
        except SlackPostError as exc:
            if exc.error == "already_reacted":
                return False
            raise
        return True

    def find_posted(self, channel_id: str, thread_ts: str, job_id: str) -> str | None:
        """The ts of this job's reply or notice if an earlier attempt did post it (found by message metadata)."""
        cursor = None
        while True:
            try:
                response = self.client.conversations_replies(
                    channel=channel_id, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor
                )
            except SlackApiError as exc:
                error = _api_error(exc).error
                raise SlackPostError(f"cannot search the thread for an earlier post: {error}", True, True) from exc
            except Exception as exc:
                raise SlackPostError(
                    f"cannot search the thread for an earlier post: {type(exc).__name__}", True, True
                ) from exc
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
