"""Runs the suite: every example through the pipeline as a dry run (pinned evidence, never posted), scored
with mlflow.genai.evaluate, summarised into pass rates (all hard scorers, all gates, the structural gates alone,
each gate), and logged to the `technoshare_eval` experiment with the recorded replies' check."""

import asyncio
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput
from mlflow.genai.scorers import Scorer

from composer.app_version import AppVersions, app_config, version_name
from composer.compose import MODE_PROMPTS, ReplyComposer
from composer.llm import LLMClient
from composer.projects import load_projects
from composer.prompts import PromptRegistry, PromptStore
from composer.quality.content import GateContext
from composer.quality.gates import GATE_NAMES
from composer.settings import ComposerSettings
from evaluation.dataset import EvalDataset, EvalExample, Split
from evaluation.negatives import NegativesReport
from evaluation.scorers import HARD_SCORERS, NO_PROJECT, STRUCTURAL_GATES, SentenceSupport, sentence_supports
from technoshare_common.http import ServiceClient
from technoshare_common.schemas import ComposeRequest, ComposeResult, Outcome

log = logging.getLogger(__name__)

EXPERIMENT = "technoshare_eval"


def prompt_names(settings: ComposerSettings) -> tuple[str, ...]:
    """The prompts the configured compose mode reads, whose versions a run is compared and promoted by."""
    return MODE_PROMPTS[settings.resolved_compose_mode()]


@dataclass
class ExampleResult:
    id: str
    url: str
    outcome: str
    repaired: bool
    scores: dict[str, float]
    rationales: dict[str, str]
    error: str | None
    text: str | None
    seconds: float
    tokens: int
    hard: tuple[str, ...] = HARD_SCORERS  # the hard scorers of the run (a content gate can be switched off)
    unsupported: list[SentenceSupport] = field(default_factory=list)  # under the grounded gate's threshold
    kind: str = ""  # arxiv, github or web
    split: str = "dev"

    def passes(self, names: Sequence[str]) -> bool:
        """Whether every hard scorer of the run among `names` passed."""
        return all(self.scores.get(name) == 1.0 for name in names if name in self.hard)

    @property
    def passed(self) -> bool:
        return self.passes(self.hard)

    @property
    def passed_without_repair(self) -> bool:
        return self.passed and not self.repaired


@dataclass
class EvalSummary:
    alias: str
    prompt_versions: dict[str, str]
    app_version: str
    results: list[ExampleResult]
    run_id: str | None = None
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    negatives: NegativesReport | None = None

    @property
    def hard(self) -> tuple[str, ...]:
        return self.results[0].hard if self.results else HARD_SCORERS

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def passed(self) -> int:
        return sum(result.passed for result in self.results)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def share(self, names: Sequence[str]) -> float:
        """The share of examples passing every hard scorer among `names`."""
        return sum(result.passes(names) for result in self.results) / max(self.total, 1)

    def groups(self) -> dict[str, list[ExampleResult]]:
        """The results by split, by kind and by both ("holdout", "web", "holdout_web"), for the per-group rates."""
        grouped: dict[str, list[ExampleResult]] = {}
        for result in self.results:
            for key in (result.split, result.kind, f"{result.split}_{result.kind}"):
                grouped.setdefault(key, []).append(result)
        return dict(sorted(grouped.items()))

    def group_metrics(self) -> dict[str, float]:
        """Per group: the pass rate and the relevance pass rate (`holdout_web_pass_rate`, ...)."""
        metrics = {}
        for key, results in self.groups().items():
            metrics[f"{key}_pass_rate"] = sum(r.passed for r in results) / len(results)
            metrics[f"{key}_relevance_pass_rate"] = sum(r.scores.get("relevance", 0.0) for r in results) / len(results)
        return metrics

    def summary_metrics(self) -> dict[str, float]:
        metrics = {
            "overall_pass_rate": self.pass_rate,
            "gates_pass_rate": self.share(GATE_NAMES),
            "structural_pass_rate": self.share(STRUCTURAL_GATES),
            "total_examples": float(self.total),
            "passed_examples": float(self.passed),
            "failed_examples": float(self.total - self.passed),
            "pass_rate_without_repair": sum(r.passed_without_repair for r in self.results) / max(self.total, 1),
            "repaired_examples": float(sum(r.repaired for r in self.results)),
            "mean_seconds_per_example": sum(r.seconds for r in self.results) / max(self.total, 1),
            "total_tokens": float(sum(r.tokens for r in self.results)),
        }
        scorer_names = sorted({name for result in self.results for name in result.scores})
        for name in scorer_names:  # a hard scorer's mean is its pass rate
            values = [result.scores[name] for result in self.results if name in result.scores]
            metrics[f"{name}_{'pass_rate' if name in HARD_SCORERS else 'mean'}"] = sum(values) / len(values)
        metrics |= self.group_metrics()
        for result in self.results:  # each example's pass on every hard scorer, beside its scorers' values
            metrics[f"{result.id}_pass_rate"] = float(result.passed)
            metrics |= {f"{result.id}_{name}": value for name, value in result.scores.items()}
            metrics[f"{result.id}_unsupported_sentences"] = float(len(result.unsupported))
        if self.negatives is not None:
            metrics |= self.negatives.metrics()
        return metrics


@dataclass
class Comparison:
    baseline: EvalSummary
    tolerance: float

    def regressed_examples(self, candidate: EvalSummary) -> list[str]:
        before = {result.id: result.passed for result in self.baseline.results}
        return [result.id for result in candidate.results if before.get(result.id) and not result.passed]

    def regressed(self, candidate: EvalSummary) -> bool:
        """A pass rate under the baseline's beyond the tolerance, or any regression case (a reply voted on in Slack)
        the baseline passes and the candidate fails: those have no tolerance."""
        cases = {result.id for result in candidate.results if result.split == Split.regression.value}
        return candidate.pass_rate < self.baseline.pass_rate - self.tolerance or bool(
            cases & set(self.regressed_examples(candidate))
        )


def build_pipeline(settings: ComposerSettings, alias: str) -> tuple[ReplyComposer, PromptStore, LLMClient]:
    """composer's composing in this process, reading prompts at `alias`: no retrieval, no poster (evidence is
    pinned, the search tool is off, nothing is posted)."""
    registry = PromptRegistry(settings.mlflow_tracking_uri) if settings.mlflow_tracking_uri else None
    prompts = PromptStore(settings.prompts_dir, registry, alias=alias)
    if registry is not None:
        for name in prompt_names(settings):  # the versions at the alias, now: never the YAML by accident
            prompts.pin(name)
    llm = LLMClient(settings)
    composer = ReplyComposer(settings, llm=llm, prompts=prompts, projects=load_projects(settings.projects_file))
    return composer, prompts, llm


async def compose_all(
    pipeline: ReplyComposer | ServiceClient, examples: list[EvalExample], concurrency: int
) -> list[ComposeResult]:
    """Each example through the pipeline in this process, or through a composer's `/v1/compose` (dry run)."""
    gate = asyncio.Semaphore(concurrency)

    async def compose(example: EvalExample) -> ComposeResult:
        if isinstance(pipeline, ReplyComposer):
            return await pipeline.compose_evidence(example.url, example.slack_text, example.evidence)
        request = ComposeRequest(url=example.url, slack_text=example.slack_text, evidence=example.evidence)
        return await pipeline.post("/v1/compose", request, ComposeResult)

    async def one(example: EvalExample) -> ComposeResult:
        async with gate:
            started = time.perf_counter()
            try:
                result = await compose(example)
            except Exception as exc:  # a dead gateway ends this example, not the suite
                result = ComposeResult(url=example.url, outcome=Outcome.error, error=f"{type(exc).__name__}: {exc}")
                result.timings["total"] = time.perf_counter() - started
            log.info(
                "example composed",
                extra={"example": example.id, "outcome": result.outcome.value, "repaired": result.repaired},
            )
            return result

    return await asyncio.gather(*(one(example) for example in examples))


def evaluation_rows(examples: list[EvalExample], results: list[ComposeResult]) -> list[dict[str, Any]]:
    return [
        {
            "inputs": {"example_id": example.id, "url": example.url, "slack_text": example.slack_text},
            "outputs": {
                "reply": result.reply.model_dump(mode="json") if result.reply else None,
                "text": result.text,
                "outcome": result.outcome.value,
                "compose_mode": result.compose_mode,
                "repaired": result.repaired,
                "error": result.error,
                "gates": [gate.model_dump(mode="json") for gate in result.gates],
            },
            "expectations": {
                "expected_theme": example.expected_theme or NO_PROJECT,  # MLflow refuses an expectation of None
                "evidence_text": example.evidence.text,
            },
        }
        for example, result in zip(examples, results, strict=True)
    ]


def score(rows: list[dict[str, Any]], scorers: list[Scorer], model_id: str | None) -> list[dict[str, Any]]:
    """mlflow.genai.evaluate over the composed outputs: per example, each scorer's value and rationale."""
    evaluation = mlflow.genai.evaluate(data=rows, scorers=scorers, model_id=model_id)
    frame = evaluation.result_df
    assert frame is not None, "mlflow.genai.evaluate returned no per-example results"
    by_id: dict[str, dict[str, Any]] = {}
    for _, row in frame.iterrows():
        inputs = row["request"] if "request" in frame.columns else row["inputs"]
        if isinstance(inputs, str):
            inputs = json.loads(inputs)
        by_id[inputs["example_id"]] = {
            s.name: (row.get(f"{s.name}/value"), row.get(f"{s.name}/rationale")) for s in scorers
        }
    return [by_id[row["inputs"]["example_id"]] for row in rows]


def numeric(value: Any) -> float:
    if isinstance(value, str):
        return 1.0 if value.lower() in ("yes", "true") else 0.0
    return float(value) if value is not None else 0.0


def run_suite(
    settings: ComposerSettings,
    dataset: EvalDataset,
    alias: str,
    scorers: list[Scorer],
    contexts: Mapping[str, GateContext],
    concurrency: int = 1,
    composer_url: str | None = None,
    negatives: NegativesReport | None = None,
) -> EvalSummary:
    """Composes and scores every example with the prompts at `alias`, logging one run to technoshare_eval
    (with the recorded replies' check, `negatives`, when given).

    With `composer_url`, a running composer composes (with its own prompts, models and gates).
    """
    started = time.perf_counter()
    if composer_url:
        composer = ServiceClient("composer", composer_url, settings)
        results = asyncio.run(_compose_then_close(composer, composer, dataset.examples, concurrency))
        versions = next((r.prompt_versions for r in results if r.prompt_versions), {})
    else:
        pipeline, prompts, llm = build_pipeline(settings, alias)
        versions = {name: prompts.get(name).version for name in prompt_names(settings)}
        results = asyncio.run(_compose_then_close(pipeline, llm, dataset.examples, concurrency))
    config = app_config(settings, versions)
    app_version = version_name(config)
    model_id = (
        AppVersions(settings.mlflow_tracking_uri, settings.mlflow_experiment_name).register(config)
        if settings.mlflow_tracking_uri
        else None
    )
    rows = evaluation_rows(dataset.examples, results)
    experiment = mlflow.set_experiment(EXPERIMENT)
    hard = tuple(s.name for s in scorers if s.name in HARD_SCORERS)
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"eval {alias} {app_version}") as run:
        scored = score(rows, scorers, model_id)
        summary = EvalSummary(
            alias=alias,
            prompt_versions=versions,
            app_version=app_version,
            results=[
                ExampleResult(
                    id=example.id,
                    url=example.url,
                    outcome=result.outcome.value,
                    repaired=result.repaired,
                    scores={name: numeric(value) for name, (value, _) in example_scores.items()},
                    rationales={name: str(why or "") for name, (_, why) in example_scores.items()},
                    error=result.error,
                    text=result.text,
                    seconds=result.timings.get("total", 0.0),
                    tokens=result.usage.total_tokens,
                    hard=hard,
                    kind=example.kind,
                    split=example.split.value,
                    unsupported=[
                        support
                        for support in sentence_supports(row["outputs"]["reply"], contexts[example.id].evidence)
                        if support.score < settings.gate_min_support
                    ],
                )
                for example, result, row, example_scores in zip(dataset.examples, results, rows, scored, strict=True)
            ],
            run_id=run.info.run_id,
            negatives=negatives,
        )
        summary.seconds = time.perf_counter() - started
        summary.metrics = summary.summary_metrics()
        mlflow.log_metrics(summary.metrics)
        mlflow.set_tags(
            {
                "prompt_alias": alias,
                "app_version": app_version,
                "dataset_fingerprint": dataset.fingerprint(),
                "stage_a_model": settings.stage_a_model,
                "stage_b_model": settings.stage_b_model,
                **({"app_version_id": model_id} if model_id else {}),
                **{f"prompt_version.{name}": version for name, version in versions.items()},
            }
        )
        mlflow.log_params({key: value for key, value in config.items() if not key.startswith("prompt.")})
        if model_id:
            MlflowClient().log_inputs(run.info.run_id, models=[LoggedModelInput(model_id)])
        log_results_artifact(summary)
    return summary


async def _compose_then_close(
    source: ReplyComposer | ServiceClient,
    client: LLMClient | ServiceClient,
    examples: list[EvalExample],
    concurrency: int,
) -> list[ComposeResult]:
    try:
        return await compose_all(source, examples, concurrency)
    finally:
        await client.aclose()


def push_to_prometheus(gateway: str, summary: EvalSummary) -> None:
    """The pass rate where Prometheus sees it (a Pushgateway), for the dashboard and the alert."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    labels = ["alias", "app_version"]  # the dashboard sets it beside live quality, version by version
    values = {
        "technoshare_eval_pass_rate": ("Share of evaluation examples passing every hard scorer.", summary.pass_rate),
        "technoshare_eval_examples": ("Examples in the last evaluation run.", float(summary.total)),
        "technoshare_eval_passed_examples": ("Examples that passed in the last run.", float(summary.passed)),
        "technoshare_eval_last_run_timestamp_seconds": ("When the last evaluation finished.", time.time()),
    }
    for name, (documentation, value) in values.items():
        Gauge(name, documentation, labels, registry=registry).labels(summary.alias, summary.app_version).set(value)
    push_to_gateway(gateway, job="technoshare_eval", registry=registry)


def record_comparison(candidate: EvalSummary, comparison: Comparison) -> dict[str, Any]:
    """The comparison, on the candidate's run: metrics, tags and a new eval_results.json."""
    baseline = comparison.baseline
    regressed_examples = comparison.regressed_examples(candidate)
    document = {
        "baseline_alias": baseline.alias,
        "baseline_prompt_versions": baseline.prompt_versions,
        "baseline_pass_rate": baseline.pass_rate,
        "baseline_run_id": baseline.run_id,
        "tolerance": comparison.tolerance,
        "regressed": comparison.regressed(candidate),
        "regressed_examples": regressed_examples,
    }
    client = MlflowClient()
    assert candidate.run_id is not None
    client.log_metric(candidate.run_id, "baseline_pass_rate", baseline.pass_rate)
    client.log_metric(candidate.run_id, "pass_rate_delta", candidate.pass_rate - baseline.pass_rate)
    client.log_metric(candidate.run_id, "regressed_examples", float(len(regressed_examples)))
    client.set_tag(candidate.run_id, "baseline_run_id", baseline.run_id or "")
    client.set_tag(candidate.run_id, "regressed", str(document["regressed"]).lower())
    log_results_artifact(candidate, document)
    return document


def run_link(tracking_uri: str, summary: EvalSummary) -> str:
    run = MlflowClient(tracking_uri).get_run(summary.run_id or "")
    return f"{tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def results_document(summary: EvalSummary, comparison: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "alias": summary.alias,
        "app_version": summary.app_version,
        "prompt_versions": summary.prompt_versions,
        "overall_pass_rate": summary.pass_rate,
        "gates_pass_rate": summary.metrics.get("gates_pass_rate"),
        "structural_pass_rate": summary.metrics.get("structural_pass_rate"),
        "pass_rates": {name: summary.metrics[f"{name}_pass_rate"] for name in HARD_SCORERS if name in summary.hard},
        "group_pass_rates": summary.group_metrics(),
        "grounding_mean": summary.metrics.get("grounding_mean"),
        "negatives": summary.negatives.document() if summary.negatives is not None else None,
        "total_examples": summary.total,
        "passed_examples": summary.passed,
        "failed_examples": summary.total - summary.passed,
        "seconds": round(summary.seconds, 1),
        "comparison": comparison,
        "examples": [
            {
                "id": r.id,
                "url": r.url,
                "kind": r.kind,
                "split": r.split,
                "passed": r.passed,
                "passed_without_repair": r.passed_without_repair,
                "outcome": r.outcome,
                "repaired": r.repaired,
                "scores": r.scores,
                "rationales": r.rationales,
                "unsupported_sentences": [dataclasses.asdict(support) for support in r.unsupported],
                "error": r.error,
                "reply_text": r.text,
                "seconds": r.seconds,
                "tokens": r.tokens,
            }
            for r in summary.results
        ],
    }


def log_results_artifact(summary: EvalSummary, comparison: dict[str, Any] | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "eval_results.json"
        path.write_text(json.dumps(results_document(summary, comparison), indent=2, ensure_ascii=False))
        mlflow.log_artifact(str(path), run_id=summary.run_id)
