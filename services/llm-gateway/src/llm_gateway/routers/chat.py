"""The OpenAI-compatible door: POST /v1/chat/completions and GET /v1/models."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from llm_gateway.upstream import Upstream, UpstreamError, openai_error
from technoshare_common.auth import require_service_token

router = APIRouter(prefix="/v1", dependencies=[Depends(require_service_token)])

PERSONA_HEADER = "x-technoshare-persona"


def get_upstream(request: Request) -> Upstream:
    return request.app.state.upstream


@router.post("/chat/completions")
async def chat_completions(request: Request, upstream: Annotated[Upstream, Depends(get_upstream)]) -> JSONResponse:
    try:
        body: dict[str, Any] = await request.json()
    except ValueError:
        return JSONResponse(openai_error("request body is not JSON", "invalid_request_error"), status_code=400)
    if not isinstance(body, dict) or not body.get("model") or not isinstance(body.get("messages"), list):
        return JSONResponse(
            openai_error("'model' and 'messages' are required", "invalid_request_error"), status_code=400
        )
    persona = request.headers.get(PERSONA_HEADER, "unknown")
    try:
        return JSONResponse(await upstream.chat(body, persona))
    except UpstreamError as exc:
        return JSONResponse(exc.body, status_code=exc.status_code)


@router.get("/models")
async def models(upstream: Annotated[Upstream, Depends(get_upstream)]) -> JSONResponse:
    try:
        return JSONResponse(await upstream.models())
    except UpstreamError as exc:
        return JSONResponse(exc.body, status_code=exc.status_code)
