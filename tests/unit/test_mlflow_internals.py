"""The private MLflow names technoshare_common.mlflow_internals relies on are still there and still work as used.

Each failure names what an MLflow upgrade changed and what it was for; docs/mlflow.md, "Upgrading MLflow",
says what to do next.
"""

import importlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import mlflow
import mlflow.tracing
import pytest
from mlflow.entities import Span, Trace
from mlflow.entities.trace_location import MlflowExperimentLocation
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracing import provider
from mlflow.tracing.client import TracingClient

from technoshare_common.mlflow_internals import (
    INTERNALS,
    Internal,
    SpanExportHooks,
    replace_span_processor_factory,
    span_processor,
)

UPGRADING = "See docs/mlflow.md, 'Upgrading MLflow'"
UNREACHABLE = "http://127.0.0.1:9"


def where(internal: Internal) -> str:
    return f"{internal.module}.{internal.name}"


def resolve(internal: Internal) -> Any:
    try:
        found: Any = importlib.import_module(internal.module)
        for part in internal.name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        pytest.fail(
            f"MLflow {mlflow.__version__} has no {where(internal)} ({exc}); technoshare_common.mlflow_internals "
            f"uses it: {internal.purpose}. {UPGRADING}"
        )
    return found


@pytest.mark.parametrize("internal", INTERNALS, ids=where)
def test_each_private_name_is_there_with_the_parameters_relied_on(internal: Internal) -> None:
    parameters = tuple(inspect.signature(resolve(internal)).parameters)
    assert parameters == internal.parameters, (
        f"MLflow {mlflow.__version__} changed {where(internal)}: its parameters are now {parameters}, "
        f"technoshare_common.mlflow_internals relies on {internal.parameters} ({internal.purpose}). {UPGRADING}"
    )


def test_the_server_version_probe_is_still_a_cache_that_can_be_forgotten() -> None:
    assert hasattr(RestStore._get_server_version, "cache_clear"), (
        f"MLflow {mlflow.__version__}: RestStore._get_server_version is no longer an lru_cache, so "
        f"forget_server_version cannot make MLflow probe a recovered server again. {UPGRADING}"
    )


class Recording(SpanExportHooks):
    def __init__(self, sent: list[tuple[str, Any]]) -> None:
        super().__init__(tracking_uri=UNREACHABLE)
        self.sent = sent

    def send_spans(self, experiment_id: str, spans: list[Span]) -> None:
        self.sent.append(("spans", [span.name for span in spans]))

    def send_trace(self, trace: Trace, prompts: Sequence[Any]) -> None:
        self.sent.append(("trace", trace.info.trace_metadata))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """What MLflow's tracer hands a Recording exporter installed as the spool's is (exported inline)."""
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    original = provider._get_mlflow_span_processor
    sent: list[tuple[str, Any]] = []
    replace_span_processor_factory(lambda tracking_uri: span_processor(Recording(sent)))
    mlflow.tracing.reset()
    mlflow.tracing.set_destination(MlflowExperimentLocation(experiment_id="0"), context_local=True)
    try:
        yield sent
    finally:
        replace_span_processor_factory(original)
        mlflow.tracing.reset()


def test_mlflow_builds_its_tracer_with_the_replaced_factory_and_calls_both_hooks(sent: list[tuple[str, Any]]) -> None:
    with mlflow.start_span("probe") as span:
        assert span.trace_id, (
            f"MLflow {mlflow.__version__} no longer starts a span through the replaced "
            f"_get_mlflow_span_processor. {UPGRADING}"
        )
    kinds = [kind for kind, _ in sent]
    assert kinds == ["spans", "trace"], (
        f"MLflow {mlflow.__version__}'s exporter no longer sends through _log_spans and _log_trace "
        f"(the spool's exporter saw {kinds}), so spans and traces would bypass the spool. {UPGRADING}"
    )
    assert sent[0][1] == ["probe"]
    assert "mlflow.trace.sizeStats" in sent[1][1], "add_size_stats_to_trace_metadata no longer adds the size stats"


def test_the_exporter_still_keeps_its_tracing_client_where_the_hooks_read_it() -> None:
    client = getattr(Recording([]), "_client", None)
    assert isinstance(client, TracingClient), (
        f"MLflow {mlflow.__version__}'s MlflowV3SpanExporter no longer keeps a TracingClient in `_client` "
        f"(found {client!r}); the spool's exporter sends and links prompts through it. {UPGRADING}"
    )
