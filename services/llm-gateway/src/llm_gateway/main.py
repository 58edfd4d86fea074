"""llm-gateway's application: run with `uvicorn --factory llm_gateway.main:build_app`."""

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from llm_gateway.gateway import Gateway
from llm_gateway.routers import chat
from llm_gateway.settings import GatewaySettings
from llm_gateway.tokens import prepare_tiktoken_cache, warm_up
from technoshare_common.app import create_app

log = logging.getLogger(__name__)


def build_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    prepare_tiktoken_cache()
    gateway = Gateway(settings)
    if gateway.ledger.has_limits:
        warm_up()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = gateway
        gateway.ledger.start()
        log.info(
            "llm-gateway ready",
            extra={
                "upstreams": {name: u.config.base_url for name, u in gateway.router.upstreams.items()},
                "prices_version": gateway.prices.version,
                "priced_models": len(gateway.prices.prices),
            },
        )
        try:
            yield
        finally:
            await gateway.aclose()

    return create_app(
        service="llm-gateway",
        settings=settings,
        routers=[chat.router],
        # The gateway serves while any upstream answers: the breaker and the fallbacks decide per call.
        dependencies={f"upstream:{name}": upstream.ping for name, upstream in gateway.router.upstreams.items()},
        lifespan=lifespan,
    )
