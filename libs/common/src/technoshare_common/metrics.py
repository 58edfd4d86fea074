"""Prometheus request metrics as a plain ASGI middleware (cheap enough for the gateway's hot path)."""

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from technoshare_common.context import JOB_ID_HEADER, TRACEPARENT_HEADER, job_id_var, traceparent_var

HTTP_REQUESTS = Counter(
    "technoshare_http_requests_total",
    "HTTP requests served, by route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "technoshare_http_request_duration_seconds",
    "HTTP request latency, by route template.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
JOBS = Counter(
    "technoshare_jobs_total",
    "Jobs ended, each once, counted by ingest after it stored the outcome (service is always ingest); the alerts "
    "and the dashboard read this.",
    ["service", "outcome"],
)
JOB_ATTEMPTS = Counter(
    "technoshare_job_attempts_total",
    "Attempts composer finished, by their outcome: a job retried (a failed post, an LLM down) counts once per "
    "attempt, so this is composer's load, not the jobs' fate.",
    ["outcome"],
)
REPLY_FALLBACKS = Counter(
    "technoshare_reply_fallbacks_total",
    "Jobs whose abstractive draft the gates refused after repair, answered by the extractive reply instead, by the "
    "first gate that refused the draft; each job once, counted by ingest with its outcome.",
    ["gate"],
)
STAGE_LATENCY = Histogram(
    "technoshare_stage_latency_seconds",
    "Latency of each pipeline stage.",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
STAGE_RUNS = Counter(
    "technoshare_stage_runs_total",
    "Pipeline stage executions, by stage and result.",
    ["stage", "result"],
)

_UNTRACKED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


class RequestContextMiddleware:
    """Binds the caller's job id and trace context, and counts requests by route template."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        job_token = job_id_var.set(_header(headers, JOB_ID_HEADER))
        trace_token = traceparent_var.set(_header(headers, TRACEPARENT_HEADER))
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            if path not in _UNTRACKED_PATHS:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                method = scope.get("method", "GET")
                HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
                HTTP_LATENCY.labels(self.service, method, route).observe(time.perf_counter() - start)
            job_id_var.reset(job_token)
            traceparent_var.reset(trace_token)


def _header(headers: dict[bytes, bytes], name: str) -> str | None:
    value = headers.get(name.lower().encode())
    return value.decode("latin-1") if value else None


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
