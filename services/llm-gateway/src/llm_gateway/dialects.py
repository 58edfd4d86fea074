"""What differs between upstreams that all call themselves OpenAI-compatible."""

from typing import Any


def adapt_request(body: dict[str, Any], kind: str, repeat_penalty: float) -> dict[str, Any]:
    """Translate an OpenAI request for the upstream's dialect."""
    if kind != "llamacpp":
        return body
    adapted = dict(body)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        # llama.cpp refuses `json_schema` but enforces the same schema as a grammar under `json_object`.
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        adapted["response_format"] = {"type": "json_object", "schema": schema}
    # Small local models loop without it; OpenAI would reject the unknown parameter.
    adapted.setdefault("repeat_penalty", repeat_penalty)
    return adapted
