"""Forwards chat completions to the configured upstream and accounts for what they used."""

import time
from typing import Any

import httpx
from prometheus_client import Counter, Histogram

from llm_gateway.dialects import adapt_request
from llm_gateway.settings import GatewaySettings

LLM_REQUESTS = Counter("technoshare_llm_requests_total", "LLM calls, by model and status.", ["model", "status"])
LLM_TOKENS = Counter(
    "technoshare_llm_tokens_total", "Tokens used, by model, kind and persona.", ["model", "kind", "persona"]
)
LLM_UPSTREAM_LATENCY = Histogram(
    "technoshare_llm_upstream_latency_seconds",
    "Upstream latency of a chat completion, by model.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)


class UpstreamError(Exception):
    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status_code = status_code
        self.body = body


def openai_error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class Upstream:
    def __init__(self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        headers = {}
        if settings.upstream_api_key:
            headers["authorization"] = f"Bearer {settings.upstream_api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=settings.upstream_base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.upstream_timeout_seconds, connect=5.0),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ping(self) -> None:
        response = await self._client.get("/models", timeout=3.0)
        if response.status_code >= 500:
            raise RuntimeError(f"upstream /models answered {response.status_code}")

    async def models(self) -> dict[str, Any]:
        response = await self._client.get("/models")
        if response.status_code >= 400:
            raise UpstreamError(response.status_code, _json_or_error(response))
        return response.json()

    async def chat(self, body: dict[str, Any], persona: str) -> dict[str, Any]:
        model = str(body.get("model", "unknown"))
        start = time.perf_counter()
        try:
            response = await self._client.post(
                "/chat/completions",
                json=adapt_request(body, self.settings.upstream_kind, self.settings.llamacpp_repeat_penalty),
            )
        except httpx.TimeoutException as exc:
            LLM_REQUESTS.labels(model, "timeout").inc()
            raise UpstreamError(504, openai_error(f"upstream timed out: {exc}", "timeout_error")) from exc
        except httpx.TransportError as exc:
            LLM_REQUESTS.labels(model, "unreachable").inc()
            raise UpstreamError(
                502, openai_error(f"upstream unreachable: {type(exc).__name__}", "api_connection_error")
            ) from exc
        finally:
            LLM_UPSTREAM_LATENCY.labels(model).observe(time.perf_counter() - start)
        LLM_REQUESTS.labels(model, str(response.status_code)).inc()
        if response.status_code >= 400:
            raise UpstreamError(response.status_code, _json_or_error(response))
        payload = response.json()
        usage = payload.get("usage") or {}
        for kind, key in (("input", "prompt_tokens"), ("output", "completion_tokens")):
            LLM_TOKENS.labels(model, kind, persona).inc(usage.get(key) or 0)
        return payload


def _json_or_error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return body
    except ValueError:
        pass
    return openai_error(f"upstream answered HTTP {response.status_code}", "upstream_error")
