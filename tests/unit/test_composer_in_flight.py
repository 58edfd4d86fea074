"""composer's jobs-in-flight gauge, the signal its HPA scales on: up while a job runs, back to 0 however it ends."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from composer.llm import LLMClient, LLMUnavailable
from composer.pipeline import DependencyUnavailable, Pipeline
from composer.projects import load_projects
from composer.prompts import PromptStore
from composer.settings import ComposerSettings
from technoshare_common.http import ServiceClient
from technoshare_common.schemas import ComposeResult, Evidence, JobRunRequest

JOB = JobRunRequest(job_id="j1", channel_id="C1", message_ts="1.2", thread_ts="1.2", url="https://example.com/a")


def in_flight() -> float | None:
    return REGISTRY.get_sample_value("technoshare_composer_jobs_in_flight")


class BlockedPipeline(Pipeline):
    """The real job and dry-run paths, with the stages held until the test lets them end (or fail)."""

    def __init__(self) -> None:
        settings = ComposerSettings()
        unused = ServiceClient("unused", "http://127.0.0.1:9", settings)
        super().__init__(
            settings,
            llm=LLMClient(settings),
            retrieval=unused,
            poster=unused,
            prompts=PromptStore(settings.prompts_dir),
            projects=load_projects(settings.projects_file),
        )
        self.entered: asyncio.Queue[None] = asyncio.Queue()
        self.release = asyncio.Event()
        self.fail = False

    async def _evidence(self, result: ComposeResult, url: str, evidence: Evidence | None, *_: object) -> None:
        self.entered.put_nowait(None)
        await self.release.wait()
        if self.fail:
            raise LLMUnavailable("upstream down")


async def entered(pipeline: BlockedPipeline, jobs: int) -> None:
    for _ in range(jobs):
        await pipeline.entered.get()


async def test_the_gauge_counts_jobs_and_dry_runs_while_they_run() -> None:
    pipeline = BlockedPipeline()
    assert in_flight() == 0
    job = asyncio.create_task(pipeline.run_job(JOB))
    dry_run = asyncio.create_task(pipeline.compose("https://example.com/b", "", None))
    await asyncio.wait_for(entered(pipeline, 2), 5)
    assert in_flight() == 2
    pipeline.release.set()
    await asyncio.gather(job, dry_run)
    assert in_flight() == 0


async def test_a_job_that_raises_leaves_the_gauge() -> None:
    pipeline = BlockedPipeline()
    pipeline.fail = True
    job = asyncio.create_task(pipeline.run_job(JOB))
    await asyncio.wait_for(entered(pipeline, 1), 5)
    assert in_flight() == 1
    pipeline.release.set()
    with pytest.raises(DependencyUnavailable):
        await job
    assert in_flight() == 0
