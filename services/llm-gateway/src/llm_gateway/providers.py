"""The upstreams the gateway can call, which one serves a model, and what each dialect needs."""

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from llm_gateway.errors import GatewayError, openai_error
from llm_gateway.resilience import RETRYABLE_STATUS, CircuitBreaker, parse_retry_after
from llm_gateway.settings import GatewaySettings, UpstreamConfig


def adapt_request(body: dict[str, Any], kind: str, repeat_penalty: float) -> dict[str, Any]:
    """Translate an OpenAI request for the upstream's dialect."""
    adapted = dict(body)
    if body.get("stream"):
        # Streams are always counted: ask for the final usage chunk whatever the client asked.
        adapted["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    if kind != "llamacpp":
        return adapted
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        # llama.cpp refuses `json_schema` but enforces the same schema as a grammar under `json_object`.
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        adapted["response_format"] = {"type": "json_object", "schema": schema}
    # Small local models loop without it; OpenAI would reject the unknown parameter.
    adapted.setdefault("repeat_penalty", repeat_penalty)
    return adapted


@dataclass
class UpstreamResponse:
    """A successful answer; for a stream, the body is still to be read line by line."""

    raw: aiohttp.ClientResponse
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    async def lines(self) -> AsyncIterator[str]:
        async for line in self.raw.content:
            yield line.decode("utf-8").rstrip("\r\n")

    async def aclose(self) -> None:
        self.raw.release()


class Upstream:
    """One provider endpoint with its own connection pool and circuit breaker.

    aiohttp rather than httpx on this hop: in benchmarks/gateway_overhead.py a pass-through on httpx
    added about 4.5 ms per call at concurrency 1, on aiohttp about 1.7 ms.
    """

    def __init__(self, name: str, config: UpstreamConfig, settings: GatewaySettings) -> None:
        self.name = name
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self._repeat_penalty = settings.llamacpp_repeat_penalty
        self._headers = {}
        if api_key := settings.api_key_for(config):
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout_seconds or settings.upstream_timeout_seconds, connect=settings.connect_timeout_seconds
        )
        self._session: aiohttp.ClientSession | None = None
        self.breaker = CircuitBreaker(name, settings.breaker_failure_threshold, settings.breaker_reset_seconds)

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop that runs it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
                json_serialize=lambda value: json.dumps(value, separators=(",", ":")),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def ping(self) -> None:
        async with self.session.get(f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(total=3)) as response:
            if response.status >= 500:
                raise RuntimeError(f"upstream {self.name} /models answered {response.status}")

    async def models(self) -> list[dict[str, Any]]:
        try:
            async with self.session.get(f"{self.base_url}/models") as response:
                body = await response.read()
                if response.status >= 400:
                    raise status_error(self.name, response.status, response.headers, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(self.name, exc) from exc
        return list(json.loads(body).get("data") or [])

    async def open(self, body: dict[str, Any]) -> UpstreamResponse:
        """Send one attempt; a stream's body is left open for the caller. Errors come back as GatewayError."""
        stream = bool(body.get("stream"))
        # Before the breaker counts a call: a request that cannot be adapted must not leave a probe unfinished.
        payload = adapt_request(body, self.config.kind, self._repeat_penalty)
        self.breaker.before_call()
        try:
            response = await self.session.post(f"{self.base_url}/chat/completions", json=payload)
            content = b"" if stream and response.status < 400 else await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.breaker.record_failure()
            raise transport_error(self.name, exc) from exc
        except BaseException:
            self.breaker.record_abandoned()
            raise
        if response.status >= 400:
            response.release()
            if response.status >= 500:
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # a 4xx (429 too) is an answer: the upstream is up
            raise status_error(self.name, response.status, response.headers, content)
        self.breaker.record_success()
        return UpstreamResponse(response, content)


def transport_error(upstream: str, exc: BaseException) -> GatewayError:
    if isinstance(exc, TimeoutError):
        return GatewayError(
            504, f"upstream '{upstream}' timed out", "timeout_error", retryable=True, status_label="timeout"
        )
    return GatewayError(
        502,
        f"upstream '{upstream}' unreachable: {type(exc).__name__}",
        "api_connection_error",
        retryable=True,
        status_label="unreachable",
    )


def status_error(upstream: str, status: int, headers: Mapping[str, str], content: bytes) -> GatewayError:
    body: dict[str, Any] | None = None
    try:
        parsed = json.loads(content)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            body = parsed
    except ValueError:
        pass
    message = (body or {}).get("error", {}).get("message") or f"upstream '{upstream}' answered {status}"
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None and (millis := parse_retry_after(headers.get("retry-after-ms"))) is not None:
        retry_after = millis / 1000
    return GatewayError(
        status,
        message,
        "upstream_error",
        body=body or openai_error(message, "upstream_error"),
        retryable=status in RETRYABLE_STATUS,
        retry_after=retry_after,
    )


class ProviderRouter:
    """Model name → upstream, by the longest matching name in LLM_MODEL_ROUTES ("*" matches everything)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.upstreams = {name: Upstream(name, config, settings) for name, config in settings.upstreams.items()}
        self._routes = sorted(settings.model_routes.items(), key=lambda item: len(item[0]), reverse=True)

    def route(self, model: str) -> Upstream:
        for pattern, upstream in self._routes:
            if pattern == "*" or model == pattern or model.startswith(pattern):
                return self.upstreams[upstream]
        raise GatewayError(
            404,
            f"no upstream serves model '{model}'; add it to LLM_MODEL_ROUTES",
            "invalid_request_error",
            code="model_not_found",
        )

    async def models(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for upstream in self.upstreams.values():
            for model in await upstream.models():
                seen.setdefault(str(model.get("id")), model)
        return list(seen.values())

    async def aclose(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.aclose()
