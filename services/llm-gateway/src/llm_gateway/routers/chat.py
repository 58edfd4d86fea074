"""The OpenAI-compatible door: POST /v1/chat/completions (JSON or SSE) and GET /v1/models."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from llm_gateway.errors import GatewayError, invalid_request
from llm_gateway.gateway import Gateway
from llm_gateway.tracking import CallContext
from technoshare_common.auth import Caller, require_caller
from technoshare_common.context import (
    CHANNEL_HEADER,
    JOB_ID_HEADER,
    PERSONA_HEADER,
    STAGE_HEADER,
    TRACEPARENT_HEADER,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_caller(Caller.composer, Caller.eval, Caller.operator))])


async def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def call_context(request: Request) -> CallContext:
    headers = request.headers
    return CallContext(
        persona=headers.get(PERSONA_HEADER) or "unknown",
        stage=headers.get(STAGE_HEADER),
        job_id=headers.get(JOB_ID_HEADER),
        channel_id=headers.get(CHANNEL_HEADER),
        trace_headers={TRACEPARENT_HEADER: value} if (value := headers.get(TRACEPARENT_HEADER)) else {},
    )


async def _on_loop(account: Callable[[], None]) -> None:
    """Runs right after the response is sent, on the event loop (a sync task would take a thread)."""
    account()


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error.body, status_code=error.status_code, headers=error.headers)


# The hot path takes plain Request and reads what it needs itself: no per-call dependency solving.
@router.post("/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    context = call_context(request)
    try:
        body: Any = await request.json()
    except ValueError:
        return error_response(invalid_request("the request body is not JSON"))
    try:
        if isinstance(body, dict) and body.get("stream") is True:
            relay = await gateway.open_stream(body, context)
            return StreamingResponse(
                relay.events(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
            )
        accounting = BackgroundTasks()
        payload, record = await gateway.complete(body, context, defer=lambda fn: accounting.add_task(_on_loop, fn))
    except GatewayError as error:
        return error_response(error)
    headers = {"x-technoshare-model": record.model}
    if record.fallback_from:
        headers["x-technoshare-fallback-from"] = record.fallback_from
    return JSONResponse(payload, headers=headers, background=accounting)


@router.get("/models")
async def models(gateway: Annotated[Gateway, Depends(get_gateway)]) -> JSONResponse:
    try:
        return JSONResponse({"object": "list", "data": await gateway.router.models()})
    except GatewayError as error:
        return error_response(error)
