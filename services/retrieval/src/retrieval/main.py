"""retrieval's application: run with `uvicorn --factory retrieval.main:build_app`."""

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from retrieval.routers import evidence
from retrieval.service import RetrievalService
from retrieval.settings import RetrievalSettings
from technoshare_common.app import create_app


def build_app(settings: RetrievalSettings | None = None) -> FastAPI:
    settings = settings or RetrievalSettings()
    service = RetrievalService(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.retrieval = service
        try:
            yield
        finally:
            await service.aclose()

    # retrieval depends on nothing internal; the links it reads are checked per request.
    return create_app(service="retrieval", settings=settings, routers=[evidence.router], lifespan=lifespan)
