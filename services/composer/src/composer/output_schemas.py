"""JSON schemas for structured output: they bound every string and array, so that even a very
small model cannot ramble past max_tokens, and each list item is exactly one sentence."""

from typing import Any

from composer.settings import ComposerSettings
from technoshare_common.text import ONE_SENTENCE_PATTERN

SENTENCE: dict[str, Any] = {"type": "string", "pattern": ONE_SENTENCE_PATTERN}


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


def stage_b_schema(settings: ComposerSettings, themes: list[str]) -> dict[str, Any]:
    project = _object({"theme": {"type": "string", "enum": themes}, "relevance": SENTENCE})
    return _object(
        {
            "tldr": _sentences(settings.tldr_sentences, settings.tldr_sentences),
            "summary": _sentences(settings.summary_min_sentences, settings.summary_max_sentences),
            "projects": {"type": "array", "items": project, "minItems": 1, "maxItems": 3},
        }
    )


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
