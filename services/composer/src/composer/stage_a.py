"""Stage A: extract the facts Stage B may use, optionally reading one more source (bounded)."""

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError

from composer.llm import LLMClient, parse_json_object
from composer.output_schemas import response_format, stage_a_schema
from composer.prompts import PromptTemplate
from composer.search_policy import SearchRefused, allowed_search
from composer.settings import ComposerSettings
from technoshare_common.http import ServiceError
from technoshare_common.schemas import (
    Evidence,
    SearchRequest,
    SearchResponse,
    Snippet,
    StageAFacts,
    TokenUsage,
)
from technoshare_common.tracing import tracer

log = logging.getLogger(__name__)

SEARCHES_REFUSED = Counter(
    "technoshare_search_refused_total",
    "Stage A's search calls refused: off the source's site, or carrying words of the Slack message.",
)

SEARCH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "search",
        "description": (
            "Read one more source when the evidence is too thin: pass `url` to read a link the evidence "
            "mentions (or another page of the source's own site), or `query` to search arXiv. Returns short "
            "snippets."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "An arXiv search query."},
                "url": {"type": "string", "description": "A link to read."},
            },
            "additionalProperties": False,
        },
    },
}


# Reads one more source for the search tool: retrieval's /v1/search in a job, absent where nothing may be fetched.
SearchFunction = Callable[[SearchRequest], Awaitable[SearchResponse]]


class StageError(Exception):
    """A stage produced nothing usable even after its retry."""


@dataclass
class StageAOutput:
    facts: StageAFacts
    usage: TokenUsage
    model: str
    tool_calls: int = 0
    extra_snippets: list[Snippet] = field(default_factory=list)
    raw: str = ""


def evidence_window(evidence: Evidence, limit: int) -> str:
    """The evidence the model sees: metadata first, then snippets in reading order, up to `limit`."""
    lines = [f"Title: {evidence.title}", f"Link: {evidence.url}", f"Coverage: {evidence.coverage.value}"]
    lines += [f"{key.capitalize()}: {value}" for key, value in evidence.metadata.items() if value]
    text = "\n".join(lines) + "\n\n"
    body = "\n\n".join(s.text for s in evidence.snippets) or evidence.text
    return (text + body)[:limit]


class StageA:
    persona = "stage_a"

    def __init__(self, settings: ComposerSettings, llm: LLMClient, search: SearchFunction | None) -> None:
        self.settings = settings
        self.llm = llm
        self.search = search

    async def run(self, prompt: PromptTemplate, evidence: Evidence, slack_text: str) -> StageAOutput:
        messages: list[dict[str, Any]] = prompt.render(
            title=evidence.title,
            url=evidence.url,
            coverage=evidence.coverage.value,
            slack_text=slack_text or "(no comment)",
            evidence=evidence_window(evidence, self.settings.evidence_window_chars),
        )
        use_tools = self.search is not None and self.settings.stage_a_tools and self.settings.max_tool_calls > 0
        usage = TokenUsage()
        tool_calls = 0
        extra: list[Snippet] = []
        invalid_answers = 0
        model = self.settings.stage_a_model
        while True:
            offer_tools = use_tools and tool_calls < self.settings.max_tool_calls
            result = await self.llm.chat(
                persona=self.persona,
                model=model,
                messages=messages,
                parameters=prompt.parameters,
                response_format=response_format("stage_a_facts", stage_a_schema()),
                tools=[SEARCH_TOOL] if offer_tools else None,
            )
            usage += result.usage
            if result.tool_calls and offer_tools:
                messages.append(result.message)
                for call in result.tool_calls:
                    tool_calls += 1
                    with tracer.span("search_tool_call", span_type="TOOL", inputs=call.function.arguments) as span:
                        answer, snippets, url = await self._search(call.function.arguments, evidence)
                        span.set_attributes({"url": url, "content_length": len(answer), "snippet_count": len(snippets)})
                    extra += snippets
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": answer})
                continue
            try:
                facts = StageAFacts.model_validate(parse_json_object(result.content))
                return StageAOutput(facts, usage, result.model, tool_calls, extra, result.content)
            except (ValueError, ValidationError) as exc:
                invalid_answers += 1
                if invalid_answers > 1:
                    raise StageError(f"Stage A gave no valid facts twice: {exc}") from exc
                log.warning("Stage A answer invalid; asking once more", extra={"error": str(exc)[:300]})
                messages += [
                    {"role": "assistant", "content": result.content[:4000]},
                    {
                        "role": "user",
                        "content": f"That answer was not valid JSON for the schema ({exc}). Answer again.",
                    },
                ]

    async def _search(self, arguments: str, evidence: Evidence) -> tuple[str, list[Snippet], str]:
        """The answer the model reads, the snippets it holds, and what was read: the link, or for a query the links
        found ("" for a refused call)."""
        assert self.search is not None
        try:
            args = json.loads(arguments or "{}")
            asked = SearchRequest(query=args.get("query"), url=args.get("url"), max_results=3)
            request = allowed_search(asked, evidence)
        except SearchRefused as exc:
            SEARCHES_REFUSED.inc()
            log.warning("search refused", extra={"reason": str(exc)})
            return f"search refused: {exc}", [], ""
        except (ValueError, ValidationError) as exc:
            return f"search refused: {exc}", [], ""
        url = str(request.url or "")
        try:
            found = await self.search(request)
        except ServiceError as exc:
            return f"search failed: {exc}", [], url
        text = "\n\n".join(f"[{s.source_url}] {s.text}" for s in found.snippets) or "no results"
        return text[:3000], found.snippets, url or " ".join(dict.fromkeys(str(s.source_url) for s in found.snippets))
