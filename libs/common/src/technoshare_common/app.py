"""The FastAPI application every service is built on: probes, metrics, logs, service auth."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from technoshare_common.context import JOB_ID_HEADER, TRACEPARENT_HEADER
from technoshare_common.logging import configure_logging
from technoshare_common.metrics import RequestContextMiddleware, metrics_endpoint
from technoshare_common.settings import ServiceSettings
from technoshare_common.tracing import TracingMiddleware, tracer

ReadinessCheck = Callable[[], Awaitable[None]]
INTERNAL_HEADERS = frozenset(h.lower().encode() for h in (JOB_ID_HEADER, TRACEPARENT_HEADER, "tracestate"))


class InternalHeadersStripped:
    """Drops the services' own context headers from requests to public paths."""

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in self.paths:
            headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() not in INTERNAL_HEADERS]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

log = logging.getLogger(__name__)


def create_app(
    *,
    service: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    readiness: dict[str, ReadinessCheck] | None = None,
    lifespan: Lifespan | None = None,
    readiness_timeout: float = 3.0,
    public_paths: frozenset[str] = frozenset(),
) -> FastAPI:
    """`public_paths`: routes that outsiders call (Slack): the headers that carry a job id or a trace context between
    the services are dropped there, so no caller outside can bind a job's logs or graft spans onto its trace."""
    configure_logging(service, settings.log_level)
    checks = readiness or {}

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.internal_token is None:
            log.warning("TECHNOSHARE_INTERNAL_TOKEN is unset: service-to-service auth is disabled")
        for old, new in settings.renamed_variables_set().items():
            log.warning(f"{old} is set but no longer read: set {new} instead", extra={"variable": old, "use": new})
        tracer.configure(
            service,
            settings.mlflow_tracking_uri,
            settings.mlflow_experiment_name,
            settings.mlflow_enable_tracing,
            settings.mlflow_spool_dir,
        )
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

    app = FastAPI(title=f"technoshare-{service}", lifespan=_lifespan)
    app.state.settings = settings
    app.add_middleware(TracingMiddleware, service=service, tracer=tracer)
    app.add_middleware(RequestContextMiddleware, service=service)
    if public_paths:
        app.add_middleware(InternalHeadersStripped, paths=public_paths)  # added last: it runs first

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        results: dict[str, Any] = {}
        ready = True
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=readiness_timeout)
                results[name] = "ok"
            except Exception as exc:
                ready = False
                results[name] = f"{type(exc).__name__}: {exc}"[:300]
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    for router in routers:
        app.include_router(router)
    return app
