"""JSON schemas for structured output: they bound every string and array, so that even a very
small model cannot ramble past max_tokens.

An item is bounded by length only: a regex `pattern` per item made llama.cpp's grammar glue a capable
model's words together ("whichcalestolarge"). That an item is one sentence is the gates' job (they count
sentences in code and say so to the repair).
"""

from typing import Any

from composer.settings import ComposerSettings

SENTENCE: dict[str, Any] = {"type": "string", "minLength": 12, "maxLength": 300}


def _sentences(min_items: int, max_items: int) -> dict[str, Any]:
    return {"type": "array", "items": SENTENCE, "minItems": min_items, "maxItems": max_items}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def stage_a_schema() -> dict[str, Any]:
    return _object(
        {
            "what_it_is": SENTENCE,
            "key_facts": _sentences(4, 8),
            "limitations": _sentences(0, 3),
        }
    )


def stage_b_schema(settings: ComposerSettings, themes: list[str], lengths: tuple[int, int]) -> dict[str, Any]:
    """`themes`: the ones the evidence earns; `lengths`: the TL;DR's and the summary's minimum sentences, lowered
    for a short source rather than padded."""
    tldr, summary_min = lengths
    project = _object({"theme": {"type": "string", "enum": themes or [""]}, "relevance": SENTENCE})
    return _object(
        {
            "tldr": _sentences(tldr, tldr),
            "summary": _sentences(summary_min, max(summary_min, settings.summary_max_sentences)),
            "projects": {
                "type": "array",
                "items": project,
                "minItems": min(1, len(themes)),
                "maxItems": min(3, len(themes)),
            },
        }
    )


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
