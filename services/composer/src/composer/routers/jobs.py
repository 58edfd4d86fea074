"""POST /v1/jobs (ingest's hand-off, posts), POST /v1/notices (a link ingest refused: the notice only) and
POST /v1/compose (dry run, never posts)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status

from composer.pipeline import DependencyUnavailable, Pipeline
from technoshare_common.auth import Caller, require_caller
from technoshare_common.context import channel_id_var, job_id_var
from technoshare_common.schemas import ComposeRequest, ComposeResult, JobRunRequest, NoticeRunRequest

router = APIRouter(prefix="/v1")


def get_pipeline(request: Request) -> Pipeline:
    return request.app.state.pipeline


def _unavailable(exc: DependencyUnavailable) -> HTTPException:
    # 503 tells ingest to hand the job back and retry it later.
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"dependency unavailable: {exc}")


@contextmanager
def _about(job: JobRunRequest | NoticeRunRequest) -> Iterator[None]:
    """The job's ids on every log line of the request; a dependency that is down is a 503 (retry), not a 500."""
    job_token, channel_token = job_id_var.set(job.job_id), channel_id_var.set(job.channel_id)
    try:
        yield
    except DependencyUnavailable as exc:
        raise _unavailable(exc) from exc
    finally:
        job_id_var.reset(job_token)
        channel_id_var.reset(channel_token)


@router.post("/jobs", dependencies=[Depends(require_caller(Caller.ingest))])
async def run_job(job: JobRunRequest, pipeline: Annotated[Pipeline, Depends(get_pipeline)]) -> ComposeResult:
    with _about(job):
        return await pipeline.run_job(job)


@router.post("/notices", dependencies=[Depends(require_caller(Caller.ingest))])
async def run_notice(job: NoticeRunRequest, pipeline: Annotated[Pipeline, Depends(get_pipeline)]) -> ComposeResult:
    """A link ingest refused: the unreadable notice only."""
    with _about(job):
        return await pipeline.run_notice(job)


@router.post("/compose", dependencies=[Depends(require_caller(Caller.eval, Caller.operator))])
async def compose(body: ComposeRequest, pipeline: Annotated[Pipeline, Depends(get_pipeline)]) -> ComposeResult:
    try:
        return await pipeline.compose(str(body.url), body.slack_text, body.evidence)
    except DependencyUnavailable as exc:
        raise _unavailable(exc) from exc
