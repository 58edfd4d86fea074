"""llm-gateway through the real openai client, in front of a scripted OpenAI-compatible upstream."""

import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llm_gateway.dialects import adapt_request
from llm_gateway.main import build_app
from llm_gateway.settings import GatewaySettings
from tests.support.servers import free_port, serve_in_thread

SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}}


def _upstream(seen: list[dict]) -> FastAPI:  # type: ignore[type-arg]
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        if body["model"] == "broken":
            return JSONResponse({"error": {"message": "model exploded", "type": "server_error"}}, status_code=500)
        return JSONResponse(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
            }
        )

    @app.get("/v1/models")
    async def models() -> dict:  # type: ignore[type-arg]
        return {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "t"}]}

    return app


@pytest.fixture(params=["openai", "llamacpp"])
def gateway(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    seen: list[dict] = []  # type: ignore[type-arg]
    with serve_in_thread(_upstream(seen)) as upstream_url:
        settings = GatewaySettings(
            LLM_UPSTREAM_BASE_URL=f"{upstream_url}/v1",
            LLM_UPSTREAM_KIND=request.param,  # type: ignore[arg-type]
            OPENAI_API_KEY="sk-upstream-secret",
            TECHNOSHARE_INTERNAL_TOKEN="internal-token",
        )
        with serve_in_thread(build_app(settings), free_port()) as url:
            yield url, seen, request.param


def test_calls_are_forwarded_with_the_upstream_key_and_usage_comes_back(gateway) -> None:  # type: ignore[no-untyped-def]
    url, seen, kind = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="internal-token", max_retries=0)
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        response_format=SCHEMA_FORMAT,  # type: ignore[arg-type]
    )
    assert completion.usage is not None and completion.usage.total_tokens == 14
    [call] = seen
    assert call["auth"] == "Bearer sk-upstream-secret"
    expected_type = "json_object" if kind == "llamacpp" else "json_schema"
    assert call["body"]["response_format"]["type"] == expected_type


def test_a_wrong_service_token_is_refused(gateway) -> None:  # type: ignore[no-untyped-def]
    url, seen, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert seen == []


def test_upstream_errors_come_back_in_openais_format(gateway) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = gateway
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="internal-token", max_retries=0)
    with pytest.raises(openai.InternalServerError) as error:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}])
    assert "model exploded" in str(error.value)


def test_llamacpp_dialect_keeps_the_schema_and_adds_a_repeat_penalty() -> None:
    adapted = adapt_request({"model": "m", "messages": [], "response_format": SCHEMA_FORMAT}, "llamacpp", 1.3)
    assert adapted["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    assert adapted["repeat_penalty"] == 1.3
    assert (
        adapt_request({"model": "m", "response_format": SCHEMA_FORMAT}, "openai", 1.3)["response_format"]
        == SCHEMA_FORMAT
    )
