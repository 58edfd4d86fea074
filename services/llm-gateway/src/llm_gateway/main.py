"""llm-gateway's application: run with `uvicorn --factory llm_gateway.main:build_app`."""

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from llm_gateway.routers import chat
from llm_gateway.settings import GatewaySettings
from llm_gateway.upstream import Upstream
from technoshare_common.app import create_app


def build_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    upstream = Upstream(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstream = upstream
        try:
            yield
        finally:
            await upstream.aclose()

    return create_app(
        service="llm-gateway",
        settings=settings,
        routers=[chat.router],
        readiness={"upstream": upstream.ping},
        lifespan=lifespan,
    )
