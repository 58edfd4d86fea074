"""The FastAPI application every service is built on: probes, metrics, logs, service auth.

Probes, by what they mean (the one place that decides it):
- `/readyz`: this process can serve: its own database, model and state. Never its peers or the provider: were one
  peer down to empty every Service that calls it, one outage would cascade through the whole release.
- `/healthz`: alive (the liveness probe), with the last check of each peer and upstream as details. Those checks run
  in the background, never on a probe, and also feed `technoshare_dependency_up` for the alerts and the dashboard.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from technoshare_common.context import JOB_ID_HEADER, TRACEPARENT_HEADER
from technoshare_common.logging import configure_logging
from technoshare_common.metrics import RequestContextMiddleware, metrics_endpoint
from technoshare_common.settings import ServiceSettings
from technoshare_common.spool import SpoolVolume
from technoshare_common.tracing import TracingMiddleware, tracer

ReadinessCheck = Callable[[], Awaitable[None]]
DependencyCheck = Callable[[], Awaitable[None]]

DEPENDENCY_UP = Gauge(
    "technoshare_dependency_up",
    "Whether a peer service or an LLM upstream answered this process's last check (1) or not (0). Shown, alerted "
    "on, never part of readiness.",
    ["dependency"],
)


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class Readiness:
    """The process's own checks, one of each in flight at most: a check stuck in a thread (a database that stopped
    answering) is reported as still running by later probes rather than joined by one more thread per probe."""

    def __init__(self, checks: dict[str, ReadinessCheck], timeout: float) -> None:
        self.checks = checks
        self.timeout = timeout
        self._running: dict[str, asyncio.Task[None]] = {}
        self._was_ready: bool | None = None

    async def results(self) -> tuple[bool, dict[str, str]]:
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            task = self._running.get(name)
            if task is not None and not task.done():
                results[name] = f"the previous check has not finished in {self.timeout} s"
                continue
            task = self._running[name] = asyncio.ensure_future(check())
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=self.timeout)
                results[name] = "ok"
            except TimeoutError:
                results[name] = f"no answer within {self.timeout} s"
            except Exception as exc:
                results[name] = _failure(exc)
        is_ready = all(result == "ok" for result in results.values())
        if is_ready is not self._was_ready:
            # A probe's 503 says nothing to whoever reads the pod's log later: the transition does, with why.
            if is_ready:
                log.info("ready", extra={"checks": results})
            else:
                log.warning("not ready", extra={"checks": results})
            self._was_ready = is_ready
        return is_ready, results


class Dependencies:
    """Peers and upstreams, checked every `interval` seconds in the background: /healthz shows the last results."""

    def __init__(self, checks: dict[str, DependencyCheck], interval: float, timeout: float) -> None:
        self.checks = checks
        self.interval = interval
        self.timeout = timeout
        self.last: dict[str, dict[str, Any]] = {name: {"up": None, "detail": "not checked yet"} for name in checks}

    async def _check(self, name: str, check: DependencyCheck) -> None:
        try:
            await asyncio.wait_for(check(), timeout=self.timeout)
            up, detail = True, "ok"
        except TimeoutError:
            up, detail = False, f"no answer in {self.timeout} s"
        except Exception as exc:
            up, detail = False, _failure(exc)
        if up is not self.last[name]["up"] and self.last[name]["up"] is not None:
            log.log(
                logging.INFO if up else logging.WARNING, f"{name} is {'up' if up else 'down'}", extra={"detail": detail}
            )
        self.last[name] = {"up": up, "detail": detail, "checked_at": round(time.time(), 3)}
        DEPENDENCY_UP.labels(name).set(1 if up else 0)

    async def run(self) -> None:
        while True:
            await asyncio.gather(*(self._check(name, check) for name, check in self.checks.items()))
            await asyncio.sleep(self.interval)


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
    dependencies: dict[str, DependencyCheck] | None = None,
    lifespan: Lifespan | None = None,
    readiness_timeout: float = 3.0,
    dependency_interval: float = 10.0,
    public_paths: frozenset[str] = frozenset(),
) -> FastAPI:
    """`readiness`: the process's own state only; `dependencies`: its peers and upstreams (see the module's
    docstring). `public_paths`: routes that outsiders call (Slack): the headers that carry a job id or a trace
    context between the services are dropped there, so no caller outside can bind a job's logs or graft spans onto
    its trace."""
    configure_logging(service, settings.log_level)
    ready = Readiness(readiness or {}, readiness_timeout)
    peers = Dependencies(dependencies or {}, dependency_interval, readiness_timeout)

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        SpoolVolume.configure(settings.mlflow_spool_dir, settings.spool_max_bytes, settings.spool_keep_rejected_hours)
        if settings.internal_token is None and not settings.caller_tokens:
            log.warning("no TECHNOSHARE_INTERNAL_TOKEN or TECHNOSHARE_CALLER_TOKENS: service-to-service auth is off")
        for old, new in settings.renamed_variables_set().items():
            log.warning(f"{old} is set but no longer read: set {new} instead", extra={"variable": old, "use": new})
        tracer.configure(
            service,
            settings.mlflow_tracking_uri,
            settings.mlflow_experiment_name,
            settings.mlflow_enable_tracing,
            settings.mlflow_spool_dir,
        )
        checking = asyncio.create_task(peers.run(), name="dependency-checks") if peers.checks else None

        async def stop_checking() -> None:
            if checking is not None:
                checking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checking

        # The checks stop before the service's own lifespan closes the clients they use.
        if lifespan is None:
            try:
                yield
            finally:
                await stop_checking()
        else:
            async with lifespan(app):
                try:
                    yield
                finally:
                    await stop_checking()

    app = FastAPI(title=f"technoshare-{service}", lifespan=_lifespan)
    app.state.settings = settings
    app.add_middleware(TracingMiddleware, service=service, tracer=tracer)
    app.add_middleware(RequestContextMiddleware, service=service)
    if public_paths:
        app.add_middleware(InternalHeadersStripped, paths=public_paths)  # added last: it runs first

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "dependencies": peers.last}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        is_ready, results = await ready.results()
        return JSONResponse({"ready": is_ready, "checks": results}, status_code=200 if is_ready else 503)

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    for router in routers:
        app.include_router(router)
    return app
