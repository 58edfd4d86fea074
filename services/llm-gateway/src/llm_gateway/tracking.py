"""What every call leaves behind: Prometheus series, an LLM span in the caller's trace, optionally an MLflow run."""

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from llm_gateway.metrics import (
    LLM_COST,
    LLM_ESTIMATED_CALLS,
    LLM_REQUESTS,
    LLM_TOKENS,
    LLM_UNPRICED_CALLS,
    BoundedLabel,
)
from llm_gateway.prices import Cost
from llm_gateway.usage import CallUsage
from technoshare_common.background import BackgroundSender
from technoshare_common.redaction import redact

log = logging.getLogger(__name__)

# MLflow keeps param values up to 6000 characters.
MAX_PARAM_CHARS = 6000


@dataclass
class CallContext:
    """Who is calling: persona, pipeline stage, job and channel. Only persona and stage become metric labels."""

    persona: str = "unknown"
    stage: str | None = None
    job_id: str | None = None
    channel_id: str | None = None
    trace_headers: dict[str, str] = field(default_factory=dict)

    @property
    def stage_name(self) -> str:
        return self.stage or self.persona


@dataclass
class CallRecord:
    requested_model: str
    model: str
    upstream: str
    usage: CallUsage
    cost: Cost | None
    latency_seconds: float
    attempts: int
    fallback_from: str | None = None
    time_to_first_token: float | None = None

    def token_usage_attribute(self) -> dict[str, int]:
        return {
            "input_tokens": self.usage.prompt_tokens,
            "output_tokens": self.usage.completion_tokens,
            "total_tokens": self.usage.total_tokens,
            "cache_read_input_tokens": self.usage.cached_tokens,
        }

    def cost_attribute(self) -> dict[str, float] | None:
        if self.cost is None:
            return None
        return {
            "input_cost": self.cost.input_usd,
            "output_cost": self.cost.output_usd,
            "total_cost": self.cost.total_usd,
        }


class CallAccounting:
    def __init__(
        self, model_label: BoundedLabel, persona_label: BoundedLabel, call_runs: "CallRunLogger | None"
    ) -> None:
        self.model_label = model_label
        self.persona_label = persona_label
        self.call_runs = call_runs

    def record_success(self, record: CallRecord, context: CallContext) -> dict[str, Any]:
        """Counts the call in Prometheus and returns the attributes of its MLflow span."""
        model = self.model_label(record.model)
        persona, stage = self.persona_label(context.persona), self.persona_label(context.stage_name)
        LLM_REQUESTS.labels(self.model_label(record.requested_model), "200").inc()
        for kind, count in record.usage.by_kind().items():
            if count:
                LLM_TOKENS.labels(model, kind, persona, stage).inc(count)
        if record.usage.estimated:
            LLM_ESTIMATED_CALLS.labels(model).inc()
        if record.cost is None:
            LLM_UNPRICED_CALLS.labels(model).inc()
            log.warning(
                "model has no price in the price table; its cost is unknown",
                extra={"model": record.model, "persona": context.persona},
            )
        else:
            LLM_COST.labels(model, persona, stage).inc(record.cost.total_usd)
        attributes: dict[str, Any] = {
            "mlflow.chat.tokenUsage": record.token_usage_attribute(),
            "mlflow.llm.model": record.model,
            "mlflow.llm.provider": record.upstream,
            "requested_model": record.requested_model,
            "persona": context.persona,
            "stage": context.stage_name,
            "job_id": context.job_id,
            "channel_id": context.channel_id,
            "attempts": record.attempts,
            "usage_estimated": record.usage.estimated,
            "reasoning_tokens": record.usage.reasoning_tokens,
        }
        if (cost := record.cost_attribute()) is not None:
            attributes["mlflow.llm.cost"] = cost
        if record.fallback_from:
            attributes["fallback_from"] = record.fallback_from
        if record.time_to_first_token is not None:
            attributes["time_to_first_token_seconds"] = round(record.time_to_first_token, 4)
        return {key: value for key, value in attributes.items() if value is not None}

    def record_failure(self, requested_model: str, status: str) -> None:
        LLM_REQUESTS.labels(self.model_label(requested_model), status).inc()

    def log_call_run(self, record: CallRecord, context: CallContext, messages: Any, response_text: str) -> None:
        if self.call_runs is not None:
            self.call_runs.submit(record, context, messages, response_text)


class CallRunLogger:
    """The per-call run schema, sent from a background thread with a bounded queue: it drops, never blocks."""

    def __init__(self, tracking_uri: str | None, capacity: int = 1000) -> None:
        self._tracking_uri = tracking_uri
        self._sender: BackgroundSender[dict[str, Any]] = BackgroundSender("mlflow-call-runs", self._log_run, capacity)
        self._client: Any = None
        self._experiments: dict[str, str] = {}

    def submit(self, record: CallRecord, context: CallContext, messages: Any, response_text: str) -> None:
        self._sender.submit(
            {
                "persona": context.persona,
                "params": {
                    "persona_id": context.persona,
                    "model": record.model,
                    "prompt": redact(json.dumps(messages, ensure_ascii=False))[:MAX_PARAM_CHARS],
                    "response": redact(response_text)[:MAX_PARAM_CHARS],
                },
                "metrics": {
                    "prompt_tokens": record.usage.prompt_tokens,
                    "completion_tokens": record.usage.completion_tokens,
                    "total_tokens": record.usage.total_tokens,
                    "latency_ms": round(record.latency_seconds * 1000, 2),
                    **({"cost_usd": record.cost.total_usd} if record.cost else {}),
                },
                "tags": {k: v for k, v in {"job_id": context.job_id, "channel_id": context.channel_id}.items() if v},
            }
        )

    def flush(self, timeout: float = 10.0) -> None:
        self._sender.flush(timeout)

    def _log_run(self, item: dict[str, Any]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag

        if self._client is None:
            self._client = MlflowClient(self._tracking_uri)
        client = self._client
        experiment = f"{item['persona']}_{dt.datetime.now(dt.UTC):%Y-%m-%d}"
        if experiment not in self._experiments:
            found = client.get_experiment_by_name(experiment)
            self._experiments[experiment] = found.experiment_id if found else client.create_experiment(experiment)
        run = client.create_run(self._experiments[experiment], tags=item["tags"])
        now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(key, float(value), now, 0) for key, value in item["metrics"].items()],
            params=[Param(key, str(value)) for key, value in item["params"].items()],
            tags=[RunTag(key, value) for key, value in item["tags"].items()],
        )
        client.set_terminated(run.info.run_id)
