"""Every use of MLflow's private API, in one place.

The trace spool (trace_spool.py) needs what MLflow offers no public way to do: its own server's spans
exported through something of ours, and a failed server-version probe forgotten. The names below are how.
An MLflow upgrade may rename or change any of them without notice, which is why mlflow-skinny is pinned
exactly: INTERNALS lists each one as this module relies on it, tests/unit/test_mlflow_internals.py checks
them against the installed MLflow, and docs/mlflow.md says how to upgrade.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow.entities import Span, Trace, TraceData, TraceInfo
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracing import provider
from mlflow.tracing.client import TracingClient
from mlflow.tracing.constant import SpansLocation, TraceTagKey
from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter
from mlflow.tracing.export.utils import try_link_prompts_to_trace
from mlflow.tracing.processor.mlflow_v3 import MlflowV3SpanProcessor
from mlflow.tracing.utils import add_size_stats_to_trace_metadata


@dataclass(frozen=True)
class Internal:
    """A private MLflow name used here: where it lives, the parameters relied on (in order), and why."""

    module: str
    name: str
    parameters: tuple[str, ...]
    purpose: str


INTERNALS: tuple[Internal, ...] = (
    Internal(
        "mlflow.tracing.provider",
        "_get_mlflow_span_processor",
        ("tracking_uri",),
        "replaced, so that every tracer provider MLflow builds exports through the spool",
    ),
    Internal(
        "mlflow.store.tracking.rest_store",
        "RestStore._get_server_version",
        ("host_creds",),
        "its lru_cache is cleared, so a server-version probe that failed during an outage is tried again",
    ),
    Internal(
        "mlflow.tracing.client",
        "TracingClient._upload_trace_data",
        ("self", "trace_info", "trace_data"),
        "uploads a spooled trace's spans where the server keeps them as an artifact",
    ),
    Internal(
        "mlflow.tracing.export.mlflow_v3",
        "MlflowV3SpanExporter.__init__",
        ("self", "tracking_uri"),
        "the exporter the spool's exporter extends",
    ),
    Internal(
        "mlflow.tracing.export.mlflow_v3",
        "MlflowV3SpanExporter._log_spans",
        ("self", "experiment_id", "spans", "workspace"),
        "overridden: the step where MLflow's exporter sends finished spans",
    ),
    Internal(
        "mlflow.tracing.export.mlflow_v3",
        "MlflowV3SpanExporter._log_trace",
        ("self", "trace", "prompts", "workspace"),
        "overridden: the step where MLflow's exporter sends a finished trace",
    ),
    Internal(
        "mlflow.tracing.processor.mlflow_v3",
        "MlflowV3SpanProcessor.__init__",
        ("self", "span_exporter", "export_metrics", "use_batch_processor"),
        "the span processor built around the spool's exporter",
    ),
    Internal(
        "mlflow.tracing.export.utils",
        "try_link_prompts_to_trace",
        ("client", "trace_id", "prompts", "synchronous"),
        "links the prompts a traced call used to its trace, as MLflow's exporter does",
    ),
    Internal(
        "mlflow.tracing.utils",
        "add_size_stats_to_trace_metadata",
        ("trace",),
        "the size metadata MLflow's exporter adds to a trace before sending it",
    ),
)


class SpanExportHooks(MlflowV3SpanExporter):
    """MLflow's exporter for its own server, with its private sending steps turned into two methods to override.

    MLflow calls `_log_spans` and `_log_trace` from its export queue; subclasses implement `send_spans` and
    `send_trace` instead and never touch MLflow's private names.
    """

    @property
    def client(self) -> TracingClient:
        return self._client

    def send_spans(self, experiment_id: str, spans: list[Span]) -> None:
        raise NotImplementedError

    def send_trace(self, trace: Trace, prompts: Sequence[Any]) -> None:
        """`trace` already carries MLflow's size metadata."""
        raise NotImplementedError

    def link_prompts(self, trace_id: str, prompts: Sequence[Any]) -> None:
        """Links prompt versions to the trace in the background; MLflow logs (never raises) a failure."""
        try_link_prompts_to_trace(client=self._client, trace_id=trace_id, prompts=prompts, synchronous=False)

    def _log_spans(self, experiment_id: str, spans: list[Span], workspace: str | None = None) -> None:
        self.send_spans(experiment_id, spans)

    def _log_trace(self, trace: Trace, prompts: Sequence[Any], workspace: str | None = None) -> None:
        add_size_stats_to_trace_metadata(trace)
        self.send_trace(trace, prompts)


def span_processor(exporter: SpanExportHooks) -> MlflowV3SpanProcessor:
    """MLflow's span processor around `exporter`: spans handed on as they end, no OTel metrics."""
    return MlflowV3SpanProcessor(span_exporter=exporter, export_metrics=False, use_batch_processor=False)


class SpanProcessorFactory(Protocol):
    """MLflow calls its factory with `tracking_uri=` by keyword."""

    def __call__(self, tracking_uri: str) -> MlflowV3SpanProcessor: ...


def replace_span_processor_factory(factory: SpanProcessorFactory) -> None:
    """Every tracer provider MLflow builds from now on (it rebuilds one on set_experiment) uses `factory`.

    MLflow offers no hook for a custom exporter of its own server, so its factory is replaced.
    """
    provider._get_mlflow_span_processor = factory


def forget_server_version() -> None:
    """MLflow caches a failed server-version probe for the life of the process, and then refuses log_spans
    for good; forgetting it makes the next attempt probe again."""
    RestStore._get_server_version.cache_clear()


def upload_spans_if_kept_as_artifact(client: TracingClient, stored: TraceInfo, data: TraceData) -> None:
    """A server keeps a trace's spans in its tracking store (sent with log_spans) or as an artifact: the
    tag on the trace as the server stored it says which, and only the artifact is uploaded here."""
    if stored.tags.get(TraceTagKey.SPANS_LOCATION) != SpansLocation.TRACKING_STORE.value:
        client._upload_trace_data(stored, data)
