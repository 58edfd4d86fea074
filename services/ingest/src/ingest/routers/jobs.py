"""Job status for operators and for `make run` (service token required)."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from ingest.dependencies import get_store
from ingest.store import JobStore, StaleAttempt
from technoshare_common.auth import Caller, require_caller
from technoshare_common.schemas import CheckpointSaved, JobCheckpoints, JobList, JobView

router = APIRouter(prefix="/v1/jobs")
READ = [Depends(require_caller(Caller.composer, Caller.operator))]


@router.get("/{job_id}", dependencies=READ)
async def get_job(job_id: str, store: Annotated[JobStore, Depends(get_store)]) -> JobView:
    job = await asyncio.to_thread(store.get, job_id)
    if job is None:
        raise HTTPException(404, detail=f"no job {job_id}")
    return job


@router.post("/{job_id}/checkpoints", dependencies=[Depends(require_caller(Caller.composer))])
async def save_checkpoints(
    job_id: str, finished: JobCheckpoints, store: Annotated[JobStore, Depends(get_store)]
) -> CheckpointSaved:
    """composer reports each finished stage here, so a later attempt of the job resumes after it.

    409 when the saving attempt no longer holds the job: another attempt runs it, and its stages are the ones kept.
    """
    try:
        stages = await asyncio.to_thread(store.save_checkpoints, job_id, finished)
    except StaleAttempt as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    if stages is None:
        raise HTTPException(404, detail=f"no job {job_id}")
    return CheckpointSaved(job_id=job_id, stages=stages)


@router.get("", dependencies=READ)
async def list_jobs(
    store: Annotated[JobStore, Depends(get_store)],
    channel_id: str | None = None,
    message_ts: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobList:
    return JobList(jobs=await asyncio.to_thread(store.find, channel_id, message_ts, limit))
