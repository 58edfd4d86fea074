"""retrieval, poster and ingest's checkpoint route as composer's ServiceClients see them, for pipeline tests:
it records what composer asked and answers as those services would; composer_pipeline is the real pipeline on them."""

from typing import Any

from pydantic import BaseModel

from composer.llm import LLMClient
from composer.pipeline import Pipeline
from composer.projects import load_projects
from composer.prompts import PromptStore
from composer.settings import ComposerSettings
from technoshare_common.http import ServiceError
from technoshare_common.schemas import (
    CheckpointSaved,
    Evidence,
    JobCheckpoints,
    PostStatus,
    ReplyRequest,
    ReplyResult,
    SearchResponse,
    Snippet,
    Source,
)


class ComposerServices:
    # What Stage A's search tool reads: another paper's sentences (QLoRA's), so a reply quoting them is visible.
    SEARCHED = (
        "Guanaco reaches 99.3% of the performance level of ChatGPT while only requiring 24 hours of finetuning on a "
        "single GPU. QLoRA backpropagates gradients through a frozen, 4-bit quantized pretrained language model "
        "into Low Rank Adapters."
    )

    def __init__(self, evidence: Evidence, *, post_failures: int = 0, unreadable: dict[str, Any] | None = None) -> None:
        """`post_failures`: posts answered first with a retryable Slack failure; `unreadable`: retrieval's 422
        detail for the link. The search tool answers with SEARCHED."""
        self.evidence = evidence
        self.post_failures = post_failures
        self.unreadable = unreadable
        self.calls: dict[str, int] = {"retrieval": 0, "poster": 0}
        self.posted: list[ReplyRequest] = []
        self.saved = JobCheckpoints()
        self.current_attempt: int | None = None  # set: ingest refuses (409) a checkpoint from any other attempt

    async def post(self, path: str, body: BaseModel, model: type[Any], **_: Any) -> Any:
        if path == "/v1/evidence":
            self.calls["retrieval"] += 1
            if self.unreadable is not None:
                raise ServiceError("retrieval", f"HTTP 422: {self.unreadable}", 422, self.unreadable)
            return self.evidence
        if path == "/v1/search":
            url = "https://arxiv.org/abs/2305.14314"
            return SearchResponse(
                sources=[Source(url=url, title="QLoRA")], snippets=[Snippet(text=self.SEARCHED, source_url=url)]
            )
        if path == "/v1/replies":
            assert isinstance(body, ReplyRequest)
            self.calls["poster"] += 1
            if self.calls["poster"] <= self.post_failures:
                return ReplyResult(
                    job_id=body.job_id, status=PostStatus.failed, channel_id="C1", error="ratelimited", retryable=True
                )
            self.posted.append(body)
            return ReplyResult(job_id=body.job_id, status=PostStatus.posted, channel_id="C1", message_ts="9.9")
        assert path.endswith("/checkpoints") and isinstance(body, JobCheckpoints)
        if self.current_attempt is not None and body.attempt != self.current_attempt:
            raise ServiceError("ingest", "HTTP 409: another attempt holds the job", 409)
        self.saved = self.saved.model_copy(update={name: value for name, value in body if value is not None})
        return CheckpointSaved(job_id=path.split("/")[3], stages=self.saved.stages())


def composer_pipeline(services: ComposerServices, **env: str) -> Pipeline:
    """composer's Pipeline with `services` as retrieval, poster and ingest; `env` as ComposerSettings' variables,
    both stages on the scripted model unless `env` says otherwise."""
    values: dict[str, Any] = {"STAGE_A_MODEL": "scripted", "STAGE_B_MODEL": "scripted", **env}
    settings = ComposerSettings(**values)
    return Pipeline(
        settings,
        llm=LLMClient(settings),
        retrieval=services,  # type: ignore[arg-type]
        poster=services,  # type: ignore[arg-type]
        prompts=PromptStore(settings.prompts_dir),
        projects=load_projects(settings.projects_file),
        ingest=services,  # type: ignore[arg-type]
    )
