"""A scripted upstream that speaks OpenAI's chat-completions protocol, JSON and SSE.

The model name picks the behaviour, so one server covers every case the gateway must handle:

- `rate-limited`: 429 with `Retry-After: 1` on the first call, then an answer
- `flaky`: 500 on the first call, then an answer
- `always-500`: 500 every time
- `hang`: never answers within any sane timeout
- `bad-request`: 400 (not retryable)
- `no-usage`: an answer without `usage` (as some OpenAI-compatible servers do)
- anything else: an answer with OpenAI's usage payload, cached and reasoning tokens included
"""

import asyncio
import json
import time
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

# A real usage payload from OpenAI's chat completions API (gpt-4o-mini, a prompt partly served from cache).
OPENAI_USAGE = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# A reasoning model's usage (o4-mini): reasoning tokens are part of completion_tokens.
REASONING_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 1850,
    "total_tokens": 3050,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 1600, "audio_tokens": 0},
}
ANSWER = "Gateways count tokens."
STREAM_PIECES = ["Gate", "ways ", "count ", "tokens."]


class OpenAIUpstream:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.hang_seconds = 60.0  # how long `hang` holds its answer (shorter when a test's server must stop soon)
        self.app = self._build()

    def _completion(self, model: str, usage: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        }
        if usage is not None:
            body["usage"] = usage
        return body

    def _stream(self, model: str, include_usage: bool) -> StreamingResponse:
        async def events():  # type: ignore[no-untyped-def]
            base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1, "model": model}
            for piece in STREAM_PIECES:
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
                await asyncio.sleep(0.01)
            yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}\n\n"
            if include_usage:
                yield f"data: {json.dumps({**base, 'choices': [], 'usage': OPENAI_USAGE})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            model = body["model"]
            self.calls[model] += 1
            self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
            call = self.calls[model]
            if model == "rate-limited" and call == 1:
                return JSONResponse(
                    {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
                    status_code=429,
                    headers={"retry-after": "1"},
                )
            if (model == "flaky" and call == 1) or model == "always-500":
                return JSONResponse({"error": {"message": "upstream exploded", "type": "server_error"}}, 500)
            if model == "bad-request":
                return JSONResponse({"error": {"message": "bad temperature", "type": "invalid_request_error"}}, 400)
            if model == "hang":
                await asyncio.sleep(self.hang_seconds)
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return self._stream(model, include_usage and model != "no-usage")
            usage = None if model == "no-usage" else REASONING_USAGE if model.startswith("o4-mini") else OPENAI_USAGE
            return JSONResponse(self._completion(model, usage))

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "test"}]}

        return app
