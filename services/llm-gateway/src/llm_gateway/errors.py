"""Errors in OpenAI's format, so every client library understands what went wrong."""

from typing import Any

# OpenAI's client retries 429 and 5xx on its own; a refusal that will not change tells it not to.
NO_RETRY_HEADERS = {"x-should-retry": "false"}


def openai_error(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class GatewayError(Exception):
    """A call that ends in an error response; `retryable` says whether another attempt or model may succeed."""

    def __init__(
        self,
        status_code: int,
        message: str,
        kind: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        status_label: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.body = body or openai_error(message, kind, code)
        self.headers = headers or {}
        self.status_label = status_label or str(status_code)


def invalid_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(
        400, message, "invalid_request_error", body=openai_error(message, "invalid_request_error", param=param)
    )
