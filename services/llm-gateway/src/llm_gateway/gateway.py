"""The one implementation behind both doors: budgets, routing, retries, fallback, streaming and accounting."""

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from llm_gateway.budgets import SpendLedger
from llm_gateway.errors import GatewayError, invalid_request
from llm_gateway.metrics import (
    LLM_FALLBACKS,
    LLM_GATEWAY_OVERHEAD,
    LLM_RETRIES,
    LLM_TIME_TO_FIRST_TOKEN,
    LLM_UPSTREAM_LATENCY,
    BoundedLabel,
)
from llm_gateway.prices import PriceTable
from llm_gateway.providers import ProviderRouter, Upstream, UpstreamResponse
from llm_gateway.resilience import CircuitOpen, RetryAfterOrBackoff
from llm_gateway.settings import GatewaySettings
from llm_gateway.tokens import count_prompt_tokens, count_text_tokens
from llm_gateway.tracking import CallAccounting, CallContext, CallRecord, CallRunLogger
from llm_gateway.usage import CallUsage
from technoshare_common.tracing import tracer

log = logging.getLogger(__name__)

SPAN_NAME = "llm_gateway.chat_completion"


@dataclass
class OpenedCall:
    """An upstream answered successfully (a stream's body still unread)."""

    response: UpstreamResponse
    requested_model: str
    model: str
    upstream: Upstream
    attempts: int
    upstream_seconds: float
    waited_seconds: float
    fallback_from: str | None


def _retry_on_same_upstream(error: BaseException) -> bool:
    return isinstance(error, GatewayError) and error.retryable and not isinstance(error, CircuitOpen)


def validate_request(body: Any) -> None:
    if not isinstance(body, dict):
        raise invalid_request("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid_request("'model' is required and must be a string", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty list", "messages")
    if not all(isinstance(message, dict) and message.get("role") for message in messages):
        raise invalid_request("every message needs a 'role'", "messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise invalid_request("'stream' must be a boolean", "stream")


def usage_with_cost(reported: dict[str, Any] | None, usage: CallUsage, cost_usd: float | None) -> dict[str, Any]:
    """The upstream's usage object as it was (or the estimate), plus `cost_usd` and `estimated`."""
    if reported and not usage.estimated:
        result = dict(reported)
    else:
        result = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        }
    result["cost_usd"] = cost_usd
    result["estimated"] = usage.estimated
    return result


def _message_text(message: dict[str, Any]) -> str:
    calls = "".join(
        f"{(call.get('function') or {}).get('name', '')}{(call.get('function') or {}).get('arguments', '')}"
        for call in message.get("tool_calls") or []
    )
    return f"{message.get('content') or ''}{calls}"


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.prices = PriceTable.load(settings.resolved_prices_file)
        self.router = ProviderRouter(settings)
        self.model_label = BoundedLabel(settings.max_label_values)
        self.persona_label = BoundedLabel(settings.max_label_values)
        self.ledger = SpendLedger(
            global_limit=settings.budget_usd_per_day,
            persona_limits=settings.persona_budgets_usd_per_day,
            database_url=settings.spend_database_url,
            timeouts=settings.database_timeouts(),
            sync_seconds=settings.spend_sync_seconds,
            persona_label=self.persona_label,
        )
        call_runs = CallRunLogger(settings.mlflow_tracking_uri) if settings.log_call_runs else None
        self.accounting = CallAccounting(self.model_label, self.persona_label, call_runs)
        self._wait = RetryAfterOrBackoff(
            settings.retry_base_seconds, settings.retry_max_seconds, settings.retry_after_max_seconds
        )

    async def aclose(self) -> None:
        await self.ledger.aclose()
        await self.router.aclose()

    async def complete(
        self,
        body: dict[str, Any],
        context: CallContext,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> tuple[dict[str, Any], CallRecord]:
        """A non-streamed chat completion, with `usage.cost_usd` added.

        `defer` lets the HTTP door count the call after the response is sent, off the caller's latency.
        """
        started, started_ns = time.perf_counter(), time.time_ns()
        opened = await self._open({**body, "stream": False}, context)
        payload = opened.response.json()
        choices = payload.get("choices") or [{}]
        message = choices[0].get("message") or {}
        usage = CallUsage.from_openai(payload.get("usage")) or self._estimate(
            body, opened.model, _message_text(message)
        )
        record = self._record(opened, payload.get("model"), usage, time.perf_counter() - started)
        payload["usage"] = usage_with_cost(payload.get("usage"), usage, _total(record))
        if record.cost is not None:
            self.ledger.add(context.persona, record.cost.total_usd)
        account = partial(self._account, record, context, body, message, started_ns)
        if defer is None:
            account()
        else:
            defer(account)
        LLM_GATEWAY_OVERHEAD.observe(
            max(0.0, time.perf_counter() - started - opened.upstream_seconds - opened.waited_seconds)
        )
        return payload, record

    async def open_stream(self, body: dict[str, Any], context: CallContext) -> "StreamRelay":
        """Connect (with retries and fallback) before the first byte, so errors still get a proper status."""
        started, started_ns = time.perf_counter(), time.time_ns()
        opened = await self._open(body, context)
        return StreamRelay(self, opened, body, context, started, started_ns)

    async def _open(self, body: dict[str, Any], context: CallContext) -> OpenedCall:
        validate_request(body)
        self.ledger.start()
        try:
            self._check_budget(body, context.persona)
            return await self._call_with_fallback(body)
        except GatewayError as error:
            self.accounting.record_failure(body["model"], error.status_label)
            raise

    def _check_budget(self, body: dict[str, Any], persona: str) -> None:
        headroom = self.ledger.headroom(persona)
        if headroom is None:
            return
        # A token is at least one UTF-8 byte: when even that bound fits the budget, tiktoken is not needed.
        upper_bound = sum(len(str(m.get("content") or "")) * 4 + 16 for m in body["messages"])
        if body.get("tools") or self.prices.prompt_cost_estimate(body["model"], upper_bound) >= headroom:
            prompt_tokens = count_prompt_tokens(body["model"], body["messages"], body.get("tools"))
            self.ledger.check(persona, self.prices.prompt_cost_estimate(body["model"], prompt_tokens))

    async def _call_with_fallback(self, body: dict[str, Any]) -> OpenedCall:
        requested = body["model"]
        candidates = [requested, *self.settings.fallback_models.get(requested, [])]
        totals = {"attempts": 0, "upstream": 0.0, "waited": 0.0}
        last_error: GatewayError | None = None
        for index, model in enumerate(candidates):
            if index:
                LLM_FALLBACKS.labels(self.model_label(requested), self.model_label(model)).inc()
                log.warning(
                    "falling back to another model",
                    extra={"from_model": candidates[index - 1], "to_model": model, "error": str(last_error)},
                )
            upstream = self.router.route(model)
            try:
                response = await self._call_with_retries(upstream, {**body, "model": model}, totals)
            except GatewayError as error:
                if not error.retryable:
                    raise
                last_error = error
                continue
            return OpenedCall(
                response=response,
                requested_model=requested,
                model=model,
                upstream=upstream,
                attempts=int(totals["attempts"]),
                upstream_seconds=totals["upstream"],
                waited_seconds=totals["waited"],
                fallback_from=requested if index else None,
            )
        assert last_error is not None
        raise last_error

    async def _call_with_retries(
        self, upstream: Upstream, body: dict[str, Any], totals: dict[str, float]
    ) -> UpstreamResponse:
        # The common case, one successful attempt, pays nothing for the retry machinery.
        try:
            return await self._attempt(upstream, body, totals)
        except GatewayError as error:
            if not _retry_on_same_upstream(error) or self.settings.max_retries == 0:
                raise
            made = [error]
        model = body["model"]

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            reason = error.status_label if isinstance(error, GatewayError) else "error"
            LLM_RETRIES.labels(self.model_label(model), reason).inc()
            totals["waited"] += state.next_action.sleep if state.next_action else 0.0
            log.info("retrying the upstream", extra={"model": model, "reason": reason, "attempt": state.attempt_number})

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_retry_on_same_upstream),
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if made:
                    raise made.pop()  # the first attempt, already made above
                return await self._attempt(upstream, body, totals)
        raise AssertionError("unreachable")

    async def _attempt(self, upstream: Upstream, body: dict[str, Any], totals: dict[str, float]) -> UpstreamResponse:
        totals["attempts"] += 1
        start = time.perf_counter()
        try:
            return await upstream.open(body)
        finally:
            elapsed = time.perf_counter() - start
            totals["upstream"] += elapsed
            LLM_UPSTREAM_LATENCY.labels(self.model_label(body["model"])).observe(elapsed)

    def _estimate(self, body: dict[str, Any], model: str, completion_text: str) -> CallUsage:
        return CallUsage(
            prompt_tokens=count_prompt_tokens(model, body["messages"], body.get("tools")),
            completion_tokens=count_text_tokens(model, completion_text),
            estimated=True,
        )

    def _record(self, opened: OpenedCall, reported_model: str | None, usage: CallUsage, latency: float) -> CallRecord:
        # Price the model that answered; upstreams such as llama.cpp report a file path instead, so fall back.
        model = opened.model
        if reported_model and self.prices.price_for(reported_model):
            model = reported_model
        return CallRecord(
            requested_model=opened.requested_model,
            model=model,
            upstream=opened.upstream.name,
            usage=usage,
            cost=self.prices.cost(model, usage),
            latency_seconds=latency,
            attempts=opened.attempts,
            fallback_from=opened.fallback_from,
        )

    def _account(
        self,
        record: CallRecord,
        context: CallContext,
        body: dict[str, Any],
        message: dict[str, Any],
        started_ns: int,
    ) -> None:
        attributes = self.accounting.record_success(record, context)
        tracer.record_span(
            SPAN_NAME,
            "LLM",
            start_time_ns=started_ns,
            attributes=attributes,
            inputs={"model": record.requested_model, "messages": body["messages"]},
            outputs=message,
            parent_headers=context.trace_headers,
        )
        self.accounting.log_call_run(record, context, body["messages"], str(message.get("content") or ""))


class StreamRelay:
    """Relays the upstream's server-sent events and accounts for the stream when it ends, however it ends."""

    def __init__(
        self,
        gateway: Gateway,
        opened: OpenedCall,
        body: dict[str, Any],
        context: CallContext,
        started: float,
        started_ns: int,
    ) -> None:
        self.gateway = gateway
        self.opened = opened
        self.body = body
        self.context = context
        self.started = started
        self.started_ns = started_ns
        self.client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events(self) -> AsyncIterator[bytes]:
        gateway, opened = self.gateway, self.opened
        text: list[str] = []
        record: CallRecord | None = None
        reported_model: str | None = None
        first_token: float | None = None
        last_chunk: dict[str, Any] = {}
        try:
            async for line in opened.response.lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                last_chunk = chunk
                reported_model = chunk.get("model") or reported_model
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    piece = _message_text(delta)
                    if piece:
                        text.append(piece)
                        if first_token is None:
                            first_token = time.perf_counter() - self.started
                            LLM_TIME_TO_FIRST_TOKEN.labels(gateway.model_label(opened.model)).observe(first_token)
                if chunk.get("usage"):
                    usage = CallUsage.from_openai(chunk["usage"])
                    priced = gateway._record(opened, reported_model, usage or CallUsage(), 0.0)
                    if usage is not None:
                        record = priced  # the call's record; its latency is set when the stream ends
                    chunk["usage"] = usage_with_cost(chunk["usage"], usage or CallUsage(), _total(priced))
                    if not self.client_wants_usage:
                        if not chunk.get("choices"):
                            continue
                        del chunk["usage"]
                    data = json.dumps(chunk, separators=(",", ":"))
                yield f"data: {data}\n\n".encode()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("the upstream stream broke off", extra={"error": f"{type(exc).__name__}: {exc}"})
            error = {"error": {"message": "the upstream stream broke off", "type": "api_connection_error"}}
            yield f"data: {json.dumps(error)}\n\n".encode()
        finally:
            await opened.response.aclose()
            if record is None:
                estimate = gateway._estimate(self.body, opened.model, "".join(text))
                record = gateway._record(opened, reported_model, estimate, 0.0)
            record.latency_seconds = time.perf_counter() - self.started
            record.time_to_first_token = first_token
            if record.cost is not None:
                gateway.ledger.add(self.context.persona, record.cost.total_usd)
            gateway._account(
                record, self.context, self.body, {"role": "assistant", "content": "".join(text)}, self.started_ns
            )
        if record.usage.estimated and self.client_wants_usage:
            # The upstream sent no usage: the client asked for a usage chunk, so it gets the estimate, marked.
            estimated = {
                "id": last_chunk.get("id"),
                "object": "chat.completion.chunk",
                "created": last_chunk.get("created"),
                "model": last_chunk.get("model", opened.model),
                "choices": [],
                "usage": usage_with_cost(None, record.usage, _total(record)),
            }
            yield f"data: {json.dumps(estimated, separators=(',', ':'))}\n\n".encode()
        yield b"data: [DONE]\n\n"


def _total(record: CallRecord) -> float | None:
    return record.cost.total_usd if record.cost else None
