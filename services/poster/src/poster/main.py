"""poster's application: run with `uvicorn --factory poster.main:build_app`."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from poster.routers import replies
from poster.service import PosterService
from poster.settings import PosterSettings
from poster.slack import SlackPoster
from poster.store import PostStore
from technoshare_common.app import create_app

log = logging.getLogger(__name__)


def build_app(settings: PosterSettings | None = None) -> FastAPI:
    settings = settings or PosterSettings()
    store = PostStore(settings.database_url, settings.database_timeouts())
    slack = None if settings.dry_run else SlackPoster(settings)
    service = PosterService(settings, store, slack)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create_schema)
        if slack is None:
            log.warning("SLACK_BOT_TOKEN is unset: dry run, replies are returned, not posted")
        app.state.poster = service
        try:
            yield
        finally:
            store.engine.dispose()

    async def store_ready() -> None:
        await asyncio.to_thread(store.ping)

    return create_app(
        service="poster",
        settings=settings,
        routers=[replies.router],
        readiness={"post_store": store_ready},
        lifespan=lifespan,
    )
