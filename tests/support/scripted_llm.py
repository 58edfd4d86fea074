"""A local OpenAI-compatible upstream with scripted answers, reached through llm-gateway by the
real openai client. Markers in the Slack text steer it:

- `slow-please`: every Stage B answer takes `slow_seconds` (to kill composer mid-job);
- `needs-repair`: the first Stage B answer has a 2-sentence TL;DR, so the gates fail once;
- `use-search`: Stage A first asks for the search tool, then answers.
- the extractive mode's selection is answered with its first candidates, in reverse order.
- `break-the-gates` (anywhere, e.g. in a candidate prompt): every Stage B answer uses Markdown **bold**,
  which the slack_formatting gate refuses, repair or not.
- the entailment judge finds every claim entailed, but those containing `contradicted` (set on the instance).

Stage B answers with the LoRA reply below, or, for a link given a reply of its own (`replies`, by URL, e.g.
`recorded_good_replies`), with that reply.
"""

import asyncio
import copy
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from technoshare_common.settings import REPO_DATA_DIR

FACTS = {
    "what_it_is": "LoRA is a method for adapting large language models with few trainable parameters.",
    "key_facts": [
        "LoRA freezes the pretrained model weights during adaptation.",
        "It injects trainable low-rank matrices into each Transformer layer.",
        "It cuts the number of trainable parameters by about ten thousand times.",
        "It matches full fine-tuning quality on several benchmark models.",
    ],
    "limitations": [],
}

SUMMARY = [
    "Full fine-tuning becomes less feasible as pre-trained models grow larger.",
    "LoRA freezes the pre-trained model weights during adaptation.",
    "Each Transformer layer receives a pair of trainable rank decomposition matrices.",
    "The LoRA design reduces trainable parameters by roughly ten thousand times.",
    "GPU memory needs during training drop by about three times.",
    "Quality stays on par with full fine-tuning on RoBERTa and DeBERTa.",
    "The method also works for GPT-2 and GPT-3 sized models.",
    "Merged adapters add no extra latency at inference time.",
    "Many task adapters can share one frozen base model.",
    "The authors also study rank-deficiency in language model adaptation.",
]


def _reply(theme: str, tldr_sentences: int) -> dict[str, Any]:
    tldr = [
        "LoRA fine-tunes large models by training small low-rank matrices.",
        "It freezes the pre-trained weights and greatly reduces the trainable parameters.",
        "Quality matches full fine-tuning at a fraction of the memory.",
    ][:tldr_sentences]
    return {
        "tldr": tldr,
        "summary": SUMMARY,
        "projects": [
            {"theme": theme, "relevance": "Our fine-tuning runs could train adapters instead of full models."}
        ],
    }


def recorded_good_replies(example_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """By link, the first recorded good reply (data/eval_replies.json) of each of these evaluation examples: replies
    the content gates accept on the example's evidence, where the LoRA reply is not grounded."""
    wanted = set(example_ids)
    urls = {e["id"]: e["url"] for e in json.loads((REPO_DATA_DIR / "eval_dataset.json").read_text())["examples"]}
    good: dict[str, dict[str, Any]] = {}
    for entry in json.loads((REPO_DATA_DIR / "eval_replies.json").read_text())["entries"]:
        if entry["label"] == "good" and entry["example_id"] in wanted:
            good.setdefault(entry["example_id"], entry["reply"])
    assert good.keys() == wanted, f"no recorded good reply for {sorted(wanted - good.keys())}"
    return {urls[example_id]: reply for example_id, reply in good.items()}


class ScriptedLLM:
    def __init__(self, replies: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.replies = dict(replies or {})
        self.requests: list[dict[str, Any]] = []
        self.slow_seconds = 0.0
        self.contradicted = ""  # the entailment judge finds claims containing this text contradicted
        self.failing = False  # a provider outage: every call answers 500
        self.lock = threading.Lock()
        self.app = self._build()

    def stage_a_requests(self) -> int:
        with self.lock:
            return sum(1 for r in self.requests if _schema_name(r) == "stage_a_facts")

    def stage_b_requests(self) -> int:
        with self.lock:
            return sum(1 for r in self.requests if _schema_name(r) == "stage_b_reply")

    def _build(self) -> FastAPI:
        app = FastAPI()

        outage = {"error": {"message": "the provider is having an outage", "type": "server_error"}}

        @app.get("/v1/models")
        async def models() -> Any:
            if self.failing:
                return JSONResponse(outage, status_code=500)
            return {"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "tests"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            if self.failing:
                return JSONResponse(outage, status_code=500)
            body = await request.json()
            with self.lock:
                self.requests.append(body)
            conversation = json.dumps(body["messages"])
            name = _schema_name(body)
            if name == "stage_b_reply" and "slow-please" in conversation:
                await asyncio.sleep(self.slow_seconds)
            if name == "stage_a_facts":
                if "use-search" in conversation and body.get("tools") and '"role": "tool"' not in conversation:
                    return JSONResponse(_completion(body, None, tool_call={"query": "low-rank adaptation"}))
                return JSONResponse(_completion(body, json.dumps(FACTS)))
            if name == "stage_b_selection":
                numbers = body["response_format"]["json_schema"]["schema"]["properties"]["tldr"]
                picks = numbers["items"]["enum"][: numbers["minItems"]]
                return JSONResponse(_completion(body, json.dumps({"tldr": picks[::-1]})))
            if name == "entailment_verdicts":
                claims = re.findall(r"^(\d+)\. Claim: (.*)$", body["messages"][-1]["content"], re.M)
                verdicts = [
                    {
                        "claim": int(n),
                        "label": "contradicted" if self.contradicted and self.contradicted in c else "entailed",
                    }
                    for n, c in claims
                ]
                return JSONResponse(_completion(body, json.dumps({"verdicts": verdicts})))
            if name == "stage_b_reply":
                schema = body["response_format"]["json_schema"]["schema"]
                theme = schema["properties"]["projects"]["items"]["properties"]["theme"]["enum"][0]
                first_try = "quality checks" not in conversation
                sentences = 2 if ("needs-repair" in conversation and first_try) else 3
                own = next((r for url, r in self.replies.items() if f"Link: {url}" in conversation), None)
                reply = copy.deepcopy(own) if own is not None else _reply(theme, sentences)
                if "break-the-gates" in conversation:
                    reply["tldr"][0] = "**LoRA** " + reply["tldr"][0]
                return JSONResponse(_completion(body, json.dumps(reply)))
            return JSONResponse(_completion(body, "plain answer"))

        return app


def _schema_name(body: dict[str, Any]) -> str | None:
    return ((body.get("response_format") or {}).get("json_schema") or {}).get("name")


def _completion(body: dict[str, Any], content: str | None, tool_call: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if tool_call is not None:
        message["tool_calls"] = [
            {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": json.dumps(tool_call)}}
        ]
        finish = "tool_calls"
    prompt_tokens = len(json.dumps(body["messages"])) // 4
    completion_tokens = len(content or "") // 4 + 5
    return {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
