"""MLflow tracing for every service, continued across hops by W3C `traceparent`, and never in the way of a job.

Tracing is active only when MLFLOW_TRACKING_URI is set and MLFLOW_ENABLE_TRACING is not false. Every
MLflow call here is guarded: a tracing failure is logged and the traced work goes on untraced.
"""

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from technoshare_common.context import TRACEPARENT_HEADER
from technoshare_common.redaction import redact_span
from technoshare_common.spool import DiskSpool

log = logging.getLogger(__name__)


class NoopSpan:
    """Stands in for an MLflow span when tracing is off, so callers never branch on it."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        pass

    def set_inputs(self, inputs: Any) -> None:
        pass

    def set_outputs(self, outputs: Any) -> None:
        pass


NOOP_SPAN = NoopSpan()


def lean_mlflow_client() -> None:
    """Offline and lean: no telemetry, no model catalog lookups, short retries toward the server.

    MLflow's defaults retry an unreachable server for minutes; our callers have a fallback instead.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # With OTel's batch processor, a span whose parent lives in another service is exported after
    # MLflow forgot the remote trace and is dropped; inline hand-off to MLflow's async queue keeps it.
    os.environ.setdefault("MLFLOW_USE_BATCH_SPAN_PROCESSOR", "false")


def use_tracking_uri(tracking_uri: str) -> None:
    """mlflow.set_tracking_uri, which also drops MLflow's tracing configuration: set only on a change, and the
    redacting span processor (technoshare_common.redaction) put back, so no span leaves unredacted."""
    import mlflow

    if mlflow.get_tracking_uri() != tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    _ensure_redaction()


def _ensure_redaction() -> None:
    from mlflow.tracing.config import get_config

    if redact_span not in get_config().span_processors:
        import mlflow

        mlflow.tracing.configure(span_processors=[redact_span])


class Tracer:
    def __init__(self) -> None:
        self.active = False
        self.service = "unknown"
        self.spool: DiskSpool | None = None

    def configure(
        self,
        service: str,
        tracking_uri: str | None,
        experiment: str,
        enabled: bool,
        spool_dir: Path,
    ) -> None:
        """Resolve the experiment in the background: an unreachable MLflow must not delay start-up.

        Until MLflow answers once, spans are not recorded; from then on what MLflow cannot take waits
        in `spool_dir`.
        """
        self.service = service
        if not enabled:
            log.info("MLflow tracing is disabled (MLFLOW_ENABLE_TRACING=false)")
            return
        if not tracking_uri:
            log.info("MLflow tracing is off: MLFLOW_TRACKING_URI is not set")
            return
        lean_mlflow_client()
        threading.Thread(
            target=self._connect,
            args=(tracking_uri, experiment, spool_dir / f"traces-{service}"),
            name="mlflow-tracing-setup",
            daemon=True,
        ).start()

    def _connect(self, tracking_uri: str, experiment: str, spool_dir: Path) -> None:
        pause = 2.0
        while True:
            try:
                import mlflow

                from technoshare_common.trace_spool import install_spooling_exporter, trace_spool

                if self.spool is None:
                    self.spool = trace_spool(spool_dir, tracking_uri)
                    install_spooling_exporter(tracking_uri, self.spool)
                use_tracking_uri(tracking_uri)
                mlflow.set_experiment(experiment)
                break
            except Exception as exc:
                log.warning(
                    "MLflow is unavailable; tracing starts once it answers",
                    extra={"error": str(exc)[:300], "retry_in_seconds": pause},
                )
                time.sleep(pause)
                pause = min(pause * 2, 60.0)
        self.active = True
        log.info("MLflow tracing on", extra={"tracking_uri": tracking_uri, "experiment": experiment})

    @contextlib.contextmanager
    def span(
        self, name: str, span_type: str = "UNKNOWN", attributes: dict[str, Any] | None = None, inputs: Any = None
    ) -> Iterator[Any]:
        """A span in the current trace (or a new one); the work inside runs whether or not MLflow cooperates."""
        if not self.active:
            yield NOOP_SPAN
            return
        import mlflow

        _ensure_redaction()
        opening = lambda: mlflow.start_span(name=name, span_type=span_type, attributes=attributes)  # noqa: E731
        with _guarded(opening, f"start span {name}") as live:
            if live is not None and inputs is not None:
                with contextlib.suppress(Exception):
                    live.set_inputs(inputs)
            yield NOOP_SPAN if live is None else live

    @contextlib.contextmanager
    def continued_from(self, headers: Mapping[str, str]) -> Iterator[None]:
        """Spans opened inside become children of the caller's span named by `traceparent`."""
        traceparent = headers.get(TRACEPARENT_HEADER)
        if not self.active or not traceparent:
            yield
            return
        from mlflow.tracing.distributed import set_tracing_context_from_http_request_headers

        carrier = {TRACEPARENT_HEADER: traceparent}
        with _guarded(lambda: set_tracing_context_from_http_request_headers(carrier), "continue the caller's trace"):
            yield

    def record_span(
        self,
        name: str,
        span_type: str,
        *,
        start_time_ns: int,
        attributes: dict[str, Any],
        inputs: Any = None,
        outputs: Any = None,
        parent_headers: Mapping[str, str] | None = None,
    ) -> None:
        """A finished span, recorded after the fact: it costs the traced work nothing while it runs."""
        if not self.active:
            return
        try:
            import mlflow

            _ensure_redaction()
            with self.continued_from(parent_headers or {}):
                span = mlflow.start_span_no_context(
                    name, span_type=span_type, inputs=inputs, attributes=attributes, start_time_ns=start_time_ns
                )
                span.end(outputs=outputs)
        except Exception as exc:
            log.debug("could not record span", extra={"span": name, "error": str(exc)[:200]})

    def tag_trace(self, **tags: str) -> None:
        """Tags on the current trace, so it can be found by job id."""
        if not self.active:
            return
        try:
            import mlflow

            mlflow.update_current_trace(tags=tags)
        except Exception as exc:
            log.debug("could not tag the trace", extra={"error": str(exc)[:200]})

    def identify_trace(self, session: str, user: str | None) -> None:
        """The current trace's mlflow.trace.session and mlflow.trace.user (a pseudonym: redaction.user_pseudonym)."""
        if not self.active:
            return
        try:
            import mlflow

            mlflow.update_current_trace(session_id=session, user=user or None)
        except Exception as exc:
            log.debug("could not set the trace's session", extra={"error": str(exc)[:200]})

    def link_trace_to_model(self, model_id: str | None) -> None:
        """Links the current trace to an MLflow app version (LoggedModel); only the trace's root process can."""
        if not self.active or not model_id:
            return
        try:
            import mlflow

            mlflow.update_current_trace(model_id=model_id)
        except Exception as exc:
            log.debug("could not link the trace to its app version", extra={"error": str(exc)[:200]})

    def current_trace_id(self) -> str | None:
        if not self.active:
            return None
        try:
            import mlflow

            span = mlflow.get_current_active_span()
            return span.trace_id if span is not None else None
        except Exception:
            return None

    def traceparent(self) -> str | None:
        """The `traceparent` that makes a callee's spans children of the current span, if there is one."""
        if not self.active:
            return None
        try:
            import mlflow
            from mlflow.tracing.distributed import get_tracing_context_headers_for_http_request

            if mlflow.get_current_active_span() is None:
                return None
            return get_tracing_context_headers_for_http_request().get(TRACEPARENT_HEADER)
        except Exception:
            return None


class TracingMiddleware:
    """A server span for each request that arrives with a `traceparent`, as a child of the caller's span."""

    def __init__(self, app: Any, service: str, tracer: "Tracer") -> None:
        self.app = app
        self.service = service
        self.tracer = tracer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.tracer.active:
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers") or []}
        if TRACEPARENT_HEADER not in headers:
            await self.app(scope, receive, send)
            return
        name = f"{self.service} {scope.get('method', 'GET')} {scope.get('path', '')}"
        with self.tracer.continued_from(headers), self.tracer.span(name, span_type="UNKNOWN"):
            await self.app(scope, receive, send)


@contextlib.contextmanager
def _guarded(opening: Callable[[], Any], what: str) -> Iterator[Any]:
    """Enters an MLflow context manager when it can (yielding what it gives, else None).

    The body runs either way, and its exceptions pass through untouched; MLflow's own are logged.
    """
    try:
        manager = opening()
        entered = manager.__enter__()
    except Exception as exc:
        log.debug(f"could not {what}", extra={"error": str(exc)[:200]})
        yield None
        return
    try:
        yield entered
    except BaseException as error:
        _exit_quietly(manager, error)
        raise
    _exit_quietly(manager, None)


def _exit_quietly(manager: Any, error: BaseException | None) -> None:
    try:
        if error is None:
            manager.__exit__(None, None, None)
        else:
            manager.__exit__(type(error), error, error.__traceback__)
    except Exception as exc:
        log.debug("could not end span", extra={"error": str(exc)[:200]})


tracer = Tracer()
