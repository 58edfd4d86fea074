"""A finished job as composer reports it, built from a bundled arXiv sample: for tracking tests and benchmarks."""

import json

from technoshare_common.schemas import (
    ComposedReply,
    ComposeResult,
    Coverage,
    Evidence,
    GateResult,
    JobRunRequest,
    Outcome,
    PostStatus,
    ProjectLink,
    ReplyResult,
    Snippet,
    Source,
    StageAFacts,
    TokenUsage,
)
from technoshare_common.settings import REPO_DATA_DIR

TIMINGS = {"retrieval": 0.4, "stage_a": 1.2, "stage_b": 2.1, "quality_gates": 0.01, "slack_post": 0.2, "total": 3.95}


def arxiv_job(job_id: str, outcome: Outcome = Outcome.success) -> tuple[JobRunRequest, ComposeResult]:
    paper = json.loads((REPO_DATA_DIR / "samples" / "arxiv" / "2106.09685.json").read_text())
    url = "https://arxiv.org/abs/2106.09685"
    job = JobRunRequest(job_id=job_id, channel_id="C1", message_ts="1.2", thread_ts="1.2", url=url, attempt=1)
    gates = [GateResult(name="schema_validity", passed=True), GateResult(name="tldr_sentence_count", passed=True)]
    if outcome == Outcome.gate_failed:
        gates.append(GateResult(name="slack_formatting", passed=False, detail="markdown bold `**` found"))
    result = ComposeResult(
        job_id=job_id,
        url=url,
        outcome=outcome,
        reply=ComposedReply(
            tldr=["LoRA trains small adapters."] * 3,
            summary=["It freezes the base weights."] * 10,
            projects=[ProjectLink(theme="Model training and fine-tuning", relevance="Cheaper fine-tuning runs.")],
        ),
        text="*TL;DR*\n…",
        gates=gates,
        evidence=Evidence(
            url=url,
            final_url=url,
            adapter_name="ArxivAdapter",
            coverage=Coverage.metadata_only,
            title=paper["title"],
            text=paper["abstract"],
            snippets=[Snippet(text=paper["abstract"][:300], source_url=url)],
            sources=[Source(url=url, title=paper["title"])],
        ),
        facts=StageAFacts(what_it_is="A fine-tuning method.", key_facts=["It uses low-rank matrices."]),
        tool_calls=1,
        timings=TIMINGS,
        usage=TokenUsage(prompt_tokens=1270, completion_tokens=1050, total_tokens=2320, cost_usd=0.00082),
        models={"stage_a": "gpt-4o-mini", "stage_b": "gpt-4o-mini"},
        prompt_versions={"stage_a_extract_facts": "3", "stage_b_compose_reply": "5"},
        post=ReplyResult(job_id=job_id, status=PostStatus.posted, channel_id="C1", payload={"text": "hello"}),
    )
    return job, result
