"""The library door: `chat_with_tracking` runs the gateway's implementation in-process, sync or async.

Inside an MLflow span the call's LLM span becomes its child, exactly as a `traceparent` header does over HTTP.
"""

import asyncio
import concurrent.futures
import contextvars
import threading
import time
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from openai.types.chat import ChatCompletion

from llm_gateway.gateway import Gateway
from llm_gateway.settings import GatewaySettings
from llm_gateway.tokens import prepare_tiktoken_cache
from llm_gateway.tracking import CallContext
from technoshare_common.schemas import TokenUsage

T = TypeVar("T")


@dataclass
class TrackedChat:
    completion: ChatCompletion
    text: str
    model: str
    usage: TokenUsage
    cost_usd: float | None
    latency_ms: float
    fallback_from: str | None


_gateways: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Gateway]" = weakref.WeakKeyDictionary()


def _gateway_for_this_loop() -> Gateway:
    """One gateway per event loop: its HTTP pools belong to the loop that made them."""
    loop = asyncio.get_running_loop()
    if loop not in _gateways:
        prepare_tiktoken_cache()
        _gateways[loop] = Gateway(GatewaySettings())
    return _gateways[loop]


def _messages(prompt: str | None, messages: list[dict[str, Any]] | None, system: str | None) -> list[dict[str, Any]]:
    if (prompt is None) == (messages is None):
        raise ValueError("pass either `prompt` or `messages`")
    if messages is not None:
        return messages
    return [*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": prompt}]


async def achat_with_tracking(
    model: str,
    prompt: str | None = None,
    *,
    persona_id: str,
    messages: list[dict[str, Any]] | None = None,
    system: str | None = None,
    stage: str | None = None,
    job_id: str | None = None,
    channel_id: str | None = None,
    gateway: Gateway | None = None,
    **parameters: Any,
) -> TrackedChat:
    """One chat completion with tokens, cost, metrics, budgets, retries and fallback; raises GatewayError."""
    gateway = gateway or _gateway_for_this_loop()
    body = {**parameters, "model": model, "messages": _messages(prompt, messages, system)}
    context = CallContext(persona=persona_id, stage=stage, job_id=job_id, channel_id=channel_id)
    start = time.perf_counter()
    payload, record = await gateway.complete(body, context)
    completion = ChatCompletion.model_validate(payload)
    cost_usd = record.cost.total_usd if record.cost else None
    return TrackedChat(
        completion=completion,
        text=completion.choices[0].message.content or "" if completion.choices else "",
        model=record.model,
        usage=TokenUsage(
            prompt_tokens=record.usage.prompt_tokens,
            completion_tokens=record.usage.completion_tokens,
            total_tokens=record.usage.total_tokens,
            cached_tokens=record.usage.cached_tokens,
            reasoning_tokens=record.usage.reasoning_tokens,
            cost_usd=cost_usd or 0.0,
            estimated=record.usage.estimated,
            unpriced_calls=int(record.cost is None),
        ),
        cost_usd=cost_usd,
        latency_ms=(time.perf_counter() - start) * 1000,
        fallback_from=record.fallback_from,
    )


class _BackgroundLoop:
    """The sync door's event loop, on a daemon thread, so sync callers share one gateway and its pools."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="llm-gateway-sync", daemon=True).start()
        loop = self._loop
        # The caller's context (its active MLflow span above all) goes with the call to the loop's thread.
        caller_context = contextvars.copy_context()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def settle(task: "asyncio.Task[T]") -> None:
            if task.cancelled():
                result.cancel()
            elif (error := task.exception()) is not None:
                result.set_exception(error)
            else:
                result.set_result(task.result())

        def start() -> None:
            caller_context.run(loop.create_task, coroutine).add_done_callback(settle)

        loop.call_soon_threadsafe(start)
        return result.result()


_background = _BackgroundLoop()


def chat_with_tracking(
    model: str,
    prompt: str | None = None,
    *,
    persona_id: str,
    messages: list[dict[str, Any]] | None = None,
    **options: Any,
) -> TrackedChat:
    """The synchronous form of `achat_with_tracking`, for scripts and notebooks."""
    return _background.run(achat_with_tracking(model, prompt, persona_id=persona_id, messages=messages, **options))
