"""LLM calls, always through llm-gateway with the official openai client."""

import json
import time
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import AsyncOpenAI

from composer.settings import ComposerSettings
from technoshare_common.context import PERSONA_HEADER, STAGE_HEADER
from technoshare_common.http import propagation_headers
from technoshare_common.schemas import TokenUsage

BUDGET_EXCEEDED = "budget_exceeded"


class LLMUnavailable(Exception):
    """The gateway or its upstream failed in a way a later attempt may not (the job is retried)."""


@dataclass
class ChatResult:
    content: str
    tool_calls: list[Any]
    message: dict[str, Any]
    usage: TokenUsage
    latency_seconds: float
    finish_reason: str | None
    model: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def usage_from(payload: dict[str, Any] | None) -> TokenUsage:
    payload = payload or {}
    prompt_details = payload.get("prompt_tokens_details") or {}
    completion_details = payload.get("completion_tokens_details") or {}
    return TokenUsage(
        prompt_tokens=payload.get("prompt_tokens") or 0,
        completion_tokens=payload.get("completion_tokens") or 0,
        total_tokens=payload.get("total_tokens") or 0,
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
        cost_usd=payload.get("cost_usd") or 0.0,
        estimated=bool(payload.get("estimated")),
        unpriced_calls=int("cost_usd" in payload and payload["cost_usd"] is None),
    )


class LLMClient:
    def __init__(self, settings: ComposerSettings) -> None:
        self._client = AsyncOpenAI(
            base_url=f"{settings.llm_gateway_url.rstrip('/')}/v1",
            api_key=settings.internal_token_value() or "technoshare-local",
            timeout=settings.llm_timeout_seconds,
            # llm-gateway owns LLM retries (and ingest's dispatcher owns job retries): a third layer here
            # would multiply every attempt.
            max_retries=0,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def chat(
        self,
        *,
        persona: str,
        stage: str | None = None,
        model: str,
        messages: list[dict[str, Any]],
        parameters: dict[str, Any],
        response_format: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> ChatResult:
        extra: dict[str, Any] = {}
        if response_format:
            extra["response_format"] = response_format
        if tools:
            extra["tools"] = tools
        start = time.perf_counter()
        try:
            completion = await self._client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                extra_headers={PERSONA_HEADER: persona, STAGE_HEADER: stage or persona, **propagation_headers()},
                **parameters,
                **extra,
            )
        except openai.RateLimitError as exc:
            if exc.code == BUDGET_EXCEEDED:
                raise  # a spent budget is the job's outcome, not a reason to retry it
            raise LLMUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except (openai.APIConnectionError, openai.InternalServerError) as exc:
            raise LLMUnavailable(f"{type(exc).__name__}: {exc}") from exc
        latency = time.perf_counter() - start
        raw = completion.model_dump(mode="json")
        choice = completion.choices[0]
        message = choice.message.model_dump(mode="json", exclude_none=True)
        return ChatResult(
            content=choice.message.content or "",
            tool_calls=list(choice.message.tool_calls or []),
            message=message,
            usage=usage_from(raw.get("usage")),
            latency_seconds=latency,
            finish_reason=choice.finish_reason,
            model=completion.model or model,
            raw=raw,
        )


def parse_json_object(content: str) -> dict[str, Any]:
    """The model's JSON answer; raises ValueError with a reason a repair prompt can quote."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("the answer is JSON but not an object")
    return value
