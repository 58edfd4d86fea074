"""composer's application: run with `uvicorn --factory composer.main:build_app`."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from composer.app_version import AppVersions
from composer.llm import LLMClient
from composer.pipeline import Pipeline
from composer.projects import load_projects
from composer.prompts import PromptRegistry, PromptStore
from composer.quality import content
from composer.routers import jobs
from composer.settings import ComposerSettings
from composer.tracking import JobTracker
from technoshare_common.app import create_app
from technoshare_common.http import ServiceClient


def build_app(settings: ComposerSettings | None = None) -> FastAPI:
    settings = settings or ComposerSettings()
    projects = load_projects(settings.projects_file)
    llm = LLMClient(settings)
    retrieval = ServiceClient("retrieval", settings.retrieval_url, settings)
    poster = ServiceClient("poster", settings.poster_url, settings)
    gateway = ServiceClient("llm-gateway", settings.llm_gateway_url, settings)
    # Checkpoints go to ingest's job store; a short timeout, as the job goes on without one.
    ingest = ServiceClient("ingest", settings.ingest_url, settings, timeout=5.0)
    registry = PromptRegistry(settings.mlflow_tracking_uri) if settings.mlflow_tracking_uri else None
    prompts = PromptStore(
        settings.prompts_dir, registry, alias=settings.prompt_alias, ttl=settings.prompt_cache_ttl_seconds
    )
    app_versions = AppVersions(
        settings.mlflow_tracking_uri, settings.mlflow_experiment_name, settings.mlflow_enable_tracking
    )
    tracker = JobTracker(
        settings.mlflow_tracking_uri,
        settings.mlflow_spool_dir / "job-runs",
        settings.mlflow_enable_tracking,
        settings.mlflow_experiment_name,
        app_versions,
    )
    pipeline = Pipeline(
        settings,
        llm=llm,
        retrieval=retrieval,
        poster=poster,
        prompts=prompts,
        projects=projects,
        tracker=tracker,
        app_versions=app_versions,
        ingest=ingest,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pipeline = pipeline
        tracker.start()
        prompts.warm_up()
        await asyncio.to_thread(content.warm_up, pipeline.composer.gate_config.content)
        pipeline.register_app_version()
        try:
            yield
        finally:
            tracker.stop()
            await llm.aclose()
            await retrieval.aclose()
            await poster.aclose()
            await gateway.aclose()
            await ingest.aclose()

    return create_app(
        service="composer",
        settings=settings,
        routers=[jobs.router],
        dependencies={"retrieval": retrieval.ping, "llm_gateway": gateway.ping, "poster": poster.ping},
        lifespan=lifespan,
    )
