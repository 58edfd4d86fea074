"""MLflow's own span exporter with a disk spool behind it, so spans and traces outlive an MLflow outage.

MLflow sends spans and traces from its async export queue and drops what the server does not take.
Here each export is tried once; when it fails (and from then on, until the spool has drained) the spans or
the trace are written to the spool and sent again when MLflow is back. Imported only once tracing is on:
it needs mlflow.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Span, Trace
from mlflow.tracing.client import TracingClient
from mlflow.tracing.processor.mlflow_v3 import MlflowV3SpanProcessor

from technoshare_common.mlflow_internals import (
    SpanExportHooks,
    forget_server_version,
    replace_span_processor_factory,
    span_processor,
    upload_spans_if_kept_as_artifact,
)
from technoshare_common.redaction import redact_value
from technoshare_common.spool import DiskSpool, Record, rejected_by_mlflow

log = logging.getLogger(__name__)


def send_trace_record(client: TracingClient, record: Record) -> None:
    """Sends spooled spans (kind `spans`) or a trace's info (kind `trace`)."""
    try:
        if record["kind"] == "spans":
            client.log_spans(record["experiment_id"], [Span.from_dict(span) for span in record["spans"]])
            return
        trace = Trace.from_dict(record["trace"])
        upload_spans_if_kept_as_artifact(client, client.start_trace(trace.info), trace.data)
    except NotImplementedError as exc:
        forget_server_version()
        raise ConnectionError(str(exc)) from exc


class SpoolingSpanExporter(SpanExportHooks):
    def __init__(self, tracking_uri: str, spool: DiskSpool) -> None:
        super().__init__(tracking_uri=tracking_uri)
        self._spool = spool

    # Spans and traces leave redacted whole (technoshare_common.redaction): the span processor covers inputs,
    # outputs and attributes as each span ends; this covers what it cannot reach, exception events and status.
    def send_spans(self, experiment_id: str, spans: list[Span]) -> None:
        serialised = [redact_value(span.to_dict()) for span in spans]
        self._deliver({"kind": "spans", "experiment_id": experiment_id, "spans": serialised})

    def send_trace(self, trace: Trace, prompts: Sequence[Any]) -> None:
        if self._deliver({"kind": "trace", "trace": redact_value(trace.to_dict())}) and prompts:
            try:
                self.link_prompts(trace.info.trace_id, prompts)
            except Exception as exc:
                log.debug("could not link prompts to the trace", extra={"error": str(exc)[:200]})

    def _deliver(self, record: Record) -> bool:
        """True when MLflow took the record now; otherwise it waits in the spool (or, if refused, is dropped)."""
        if self._spool.available and self._spool.backlog() == 0:
            try:
                send_trace_record(self.client, record)
                return True
            except Exception as exc:
                if rejected_by_mlflow(exc):
                    self._spool.reject(exc, record_kind=record["kind"])
                    return False
                self._spool.available = False
                log.warning(
                    "MLflow is unavailable; spans and traces wait in the spool until it is back",
                    extra={"error": str(exc)[:300]},
                )
        self._spool.put(record)
        return False


def install_spooling_exporter(tracking_uri: str, spool: DiskSpool) -> None:
    """Every MLflow tracer provider built from now on (MLflow rebuilds it on set_experiment) exports through
    the spool."""

    def mlflow_span_processor(tracking_uri: str = tracking_uri) -> MlflowV3SpanProcessor:
        return span_processor(SpoolingSpanExporter(tracking_uri, spool))

    replace_span_processor_factory(mlflow_span_processor)
    spool.start()


def trace_spool(directory: Path, tracking_uri: str) -> DiskSpool:
    client = TracingClient(tracking_uri)
    return DiskSpool(directory, "trace", lambda record: send_trace_record(client, record))
