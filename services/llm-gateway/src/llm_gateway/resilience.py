"""Retries with backoff that honour Retry-After, and a circuit breaker per upstream."""

import email.utils
import time
from collections.abc import Callable

from tenacity import RetryCallState, wait_exponential_jitter

from llm_gateway.errors import NO_RETRY_HEADERS, GatewayError
from llm_gateway.metrics import LLM_CIRCUIT_OPEN

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now())


class RetryAfterOrBackoff:
    """tenacity wait: the upstream's Retry-After when it sent one (capped), else exponential backoff with jitter."""

    def __init__(self, base: float, maximum: float, retry_after_max: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=base, max=maximum, jitter=base)
        self._retry_after_max = retry_after_max

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, GatewayError) and error.retry_after is not None:
            return min(error.retry_after, self._retry_after_max)
        return self._backoff(state)


class CircuitOpen(GatewayError):
    def __init__(self, upstream: str, retry_in: float) -> None:
        super().__init__(
            503,
            f"upstream '{upstream}' is failing; its circuit breaker is open for another {retry_in:.0f}s",
            "api_connection_error",
            code="circuit_open",
            retryable=True,  # another model (a fallback) may still answer; the caller must not retry into it
            headers=NO_RETRY_HEADERS,
            status_label="circuit_open",
        )


class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures → one probe after `reset_seconds` (half-open).

    The probe always ends half-open: an answer (2xx or 4xx) closes the circuit; a 5xx, a timeout or a
    cancelled probe opens it again. A probe left unresolved would refuse every call until a restart.
    """

    def __init__(
        self, name: str, threshold: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        LLM_CIRCUIT_OPEN.labels(name).set(0)

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.reset_seconds else "open"

    def before_call(self) -> None:
        state = self.state
        if state == "open" or (state == "half_open" and self._probing):
            assert self._opened_at is not None
            raise CircuitOpen(self.name, max(0.0, self.reset_seconds - (self._clock() - self._opened_at)))
        if state == "half_open":
            self._probing = True

    def record_success(self) -> None:
        self._failures = 0
        self._probing = False
        if self._opened_at is not None:
            self._opened_at = None
            LLM_CIRCUIT_OPEN.labels(self.name).set(0)

    def record_abandoned(self) -> None:
        """A call cancelled by its caller says nothing of the upstream; a probe's slot must not stay taken."""
        if self._probing:
            self.record_failure()

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._opened_at = self._clock()
            self._probing = False
            LLM_CIRCUIT_OPEN.labels(self.name).set(1)
