"""The client one service uses to call another: timeouts, retries, trace propagation, service auth."""

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from technoshare_common.context import (
    CHANNEL_HEADER,
    JOB_ID_HEADER,
    TRACEPARENT_HEADER,
    channel_id_var,
    job_id_var,
    traceparent_var,
)
from technoshare_common.settings import ServiceSettings
from technoshare_common.tracing import tracer

ModelT = TypeVar("ModelT", bound=BaseModel)

_RETRYABLE_STATUS = frozenset({502, 503, 504})


class ServiceError(Exception):
    """Another service answered with an error, or could not be reached."""

    def __init__(self, service: str, message: str, status_code: int | None = None, detail: Any = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.status_code = status_code
        self.detail = detail  # the error body's `detail`, e.g. retrieval's {"kind": ..., "message": ...}

    @property
    def retryable(self) -> bool:
        return self.status_code is None or self.status_code in _RETRYABLE_STATUS


def propagation_headers() -> dict[str, str]:
    headers: dict[str, str] = {}
    if job_id := job_id_var.get():
        headers[JOB_ID_HEADER] = job_id
    if channel_id := channel_id_var.get():
        headers[CHANNEL_HEADER] = channel_id
    if traceparent := tracer.traceparent() or traceparent_var.get():
        headers[TRACEPARENT_HEADER] = traceparent
    return headers


class ServiceClient:
    """JSON-over-HTTP to one service, with pydantic models on both sides of the call."""

    def __init__(
        self,
        name: str,
        base_url: str,
        settings: ServiceSettings,
        *,
        timeout: float | None = None,
        retries: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        headers = {"user-agent": "technoshare-internal"}
        if token := settings.internal_token_value():
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout or settings.http_timeout_seconds, connect=5.0),
            transport=transport,
        )
        self._retries = settings.http_retries if retries is None else retries

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(
        self, path: str, body: BaseModel, response_model: type[ModelT], *, request_timeout: float | None = None
    ) -> ModelT:
        payload = body.model_dump(mode="json", exclude_none=True)
        response = await self._request("POST", path, json=payload, request_timeout=request_timeout)
        return response_model.model_validate(response.json())

    async def get(self, path: str, response_model: type[ModelT], **params: Any) -> ModelT:
        response = await self._request("GET", path, params=params)
        return response_model.model_validate(response.json())

    async def ping(self, path: str = "/healthz") -> None:
        response = await self._client.get(path, timeout=2.0)
        response.raise_for_status()

    async def _request(
        self, method: str, path: str, *, request_timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        extra: dict[str, Any] = {"timeout": request_timeout} if request_timeout is not None else {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_exponential_jitter(initial=0.2, max=3.0),
            retry=retry_if_exception(lambda e: isinstance(e, ServiceError) and e.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    response = await self._client.request(
                        method, path, headers=propagation_headers(), **extra, **kwargs
                    )
                except httpx.TransportError as exc:
                    raise ServiceError(self.name, f"{type(exc).__name__}: {exc}") from exc
                if response.status_code >= 400:
                    detail = _error_detail(response)
                    raise ServiceError(
                        self.name, f"HTTP {response.status_code}: {detail}", response.status_code, detail
                    )
                return response
        raise AssertionError("unreachable")


def _error_detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return (body.get("detail") or body.get("error") or body) if isinstance(body, dict) else body
