"""The upstreams the gateway can call, which one serves a model, and what each dialect needs."""

from typing import Any

import httpx

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


class Upstream:
    """One provider endpoint with its own connection pool and circuit breaker."""

    def __init__(
        self,
        name: str,
        config: UpstreamConfig,
        settings: GatewaySettings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._repeat_penalty = settings.llamacpp_repeat_penalty
        headers = {}
        if api_key := settings.api_key_for(config):
            headers["authorization"] = f"Bearer {api_key}"
        self.client = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(
                config.timeout_seconds or settings.upstream_timeout_seconds, connect=settings.connect_timeout_seconds
            ),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            transport=transport,
        )
        self.breaker = CircuitBreaker(name, settings.breaker_failure_threshold, settings.breaker_reset_seconds)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def ping(self) -> None:
        response = await self.client.get("/models", timeout=3.0)
        if response.status_code >= 500:
            raise RuntimeError(f"upstream {self.name} /models answered {response.status_code}")

    async def models(self) -> list[dict[str, Any]]:
        response = await self.client.get("/models")
        if response.status_code >= 400:
            raise status_error(self.name, response)
        return list(response.json().get("data") or [])

    async def open(self, body: dict[str, Any]) -> httpx.Response:
        """Send one attempt; a stream's body is left open for the caller. Errors come back as GatewayError."""
        self.breaker.before_call()
        request = self.client.build_request(
            "POST", "/chat/completions", json=adapt_request(body, self.config.kind, self._repeat_penalty)
        )
        try:
            response = await self.client.send(request, stream=bool(body.get("stream")))
        except httpx.TimeoutException as exc:
            self.breaker.record_failure()
            raise GatewayError(
                504,
                f"upstream '{self.name}' timed out ({type(exc).__name__})",
                "timeout_error",
                retryable=True,
                status_label="timeout",
            ) from exc
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            raise GatewayError(
                502,
                f"upstream '{self.name}' unreachable: {type(exc).__name__}",
                "api_connection_error",
                retryable=True,
                status_label="unreachable",
            ) from exc
        if response.status_code >= 400:
            if response.status_code >= 500:
                self.breaker.record_failure()
            if body.get("stream"):
                await response.aread()
                await response.aclose()
            raise status_error(self.name, response)
        self.breaker.record_success()
        return response


def status_error(upstream: str, response: httpx.Response) -> GatewayError:
    body: dict[str, Any] | None = None
    try:
        parsed = response.json()
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            body = parsed
    except ValueError:
        pass
    message = (body or {}).get("error", {}).get("message") or f"upstream '{upstream}' answered {response.status_code}"
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is None and (millis := response.headers.get("retry-after-ms")):
        retry_after = parse_retry_after(millis)
        retry_after = retry_after / 1000 if retry_after is not None else None
    return GatewayError(
        response.status_code,
        message,
        "upstream_error",
        body=body or openai_error(message, "upstream_error"),
        retryable=response.status_code in RETRYABLE_STATUS,
        retry_after=retry_after,
    )


class ProviderRouter:
    """Model name → upstream, by the longest matching name in LLM_MODEL_ROUTES ("*" matches everything)."""

    def __init__(self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.upstreams = {
            name: Upstream(name, config, settings, transport) for name, config in settings.upstreams.items()
        }
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

    async def ping(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.ping()

    async def models(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for upstream in self.upstreams.values():
            for model in await upstream.models():
                seen.setdefault(str(model.get("id")), model)
        return list(seen.values())

    async def aclose(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.aclose()
