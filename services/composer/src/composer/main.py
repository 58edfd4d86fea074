"""composer's application: run with `uvicorn --factory composer.main:build_app`."""

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from composer.llm import LLMClient
from composer.pipeline import Pipeline
from composer.projects import load_projects
from composer.prompts import PromptRegistry, PromptStore
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
    registry = PromptRegistry(settings.mlflow_tracking_uri) if settings.mlflow_tracking_uri else None
    prompts = PromptStore(
        settings.prompts_dir, registry, alias=settings.prompt_alias, ttl=settings.prompt_cache_ttl_seconds
    )
    tracker = JobTracker(settings.mlflow_tracking_uri, settings.mlflow_spool_dir, settings.mlflow_enable_tracking)
    pipeline = Pipeline(
        settings, llm=llm, retrieval=retrieval, poster=poster, prompts=prompts, projects=projects, tracker=tracker
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pipeline = pipeline
        tracker.start()
        prompts.warm_up()
        try:
            yield
        finally:
            tracker.stop()
            await llm.aclose()
            await retrieval.aclose()
            await poster.aclose()
            await gateway.aclose()

    return create_app(
        service="composer",
        settings=settings,
        routers=[jobs.router],
        readiness={"retrieval": retrieval.ping, "llm_gateway": gateway.ping, "poster": poster.ping},
        lifespan=lifespan,
    )
