"""The shadow canary: the prompts at an alias (default @staging) against @prod on the team's own latest links.

`make canary` (technoshare-canary) takes the last N live jobs' links with the evidence their MLflow runs pinned, and
composes each as a dry run (nothing posted) with the candidate's prompts and with @prod's, in this process through
llm-gateway as the evaluation does. It compares the two on the same links: the share of replies passing every gate,
mean grounding, cost per reply and p95 latency; logs the comparison as a run of experiment `technoshare_canary`
linked to both app versions; and passes when the candidate is no worse than @prod beyond the tolerances. With
`--promote`, a passing canary moves @prod to the candidate's versions: candidate -> staging on a passing evaluation
(`technoshare-eval --promote-to staging`), staging -> prod on a passing canary. `technoshare-eval --promote
--require-canary` promotes to prod only an app version whose last canary passed.
"""

import argparse
import asyncio
import json
import statistics
import sys
from dataclasses import dataclass
from typing import Any

from evaluation.job_runs import EVIDENCE, JOBS_EXPERIMENT, MESSAGE, run_artifacts
from technoshare_common.redaction import redact
from technoshare_common.schemas import ComposeResult, Evidence, Outcome

CANARY_EXPERIMENT = "technoshare_canary"


@dataclass(frozen=True)
class LiveLink:
    job_id: str
    url: str
    slack_text: str
    evidence: Evidence


@dataclass
class Arm:
    """One alias's replies on the canary's links."""

    alias: str
    results: list[ComposeResult]
    app_version: str
    app_version_id: str | None  # its MLflow LoggedModel, which the canary's run links to
    prompt_versions: dict[str, str]  # what was composed with: what --promote moves the baseline to

    @property
    def errors(self) -> int:
        """Links that got no reply at all (the gateway or the model failed): never a pass."""
        return sum(result.outcome == Outcome.error for result in self.results)

    def metrics(self) -> dict[str, float]:
        passed = [r.outcome == Outcome.success and r.quality is not None and r.quality.passed for r in self.results]
        grounding = [r.quality.grounding_mean for r in self.results if r.quality is not None]
        latencies = sorted(r.timings.get("total", 0.0) for r in self.results)
        replies = sum(r.reply is not None for r in self.results)
        return {
            "gate_pass_rate": sum(passed) / len(passed) if passed else 0.0,
            "grounding_mean": statistics.fmean(grounding) if grounding else 0.0,
            "cost_per_reply_usd": sum(r.usage.cost_usd for r in self.results) / replies if replies else 0.0,
            "p95_latency_seconds": latencies[max(0, -(-len(latencies) * 95 // 100) - 1)] if latencies else 0.0,
        }


def live_links(client: Any, count: int) -> list[LiveLink]:
    """The last `count` live jobs that posted a reply, with the evidence their runs pinned (newest first)."""
    experiment = client.get_experiment_by_name(JOBS_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        "tags.outcome = 'success' and tags.dry_run = 'false'",
        order_by=["attributes.start_time DESC"],
        max_results=count,
    )
    links = []
    for run in runs:
        texts = run_artifacts(client, run.info.run_id, (EVIDENCE, MESSAGE))
        if EVIDENCE not in texts:
            continue
        evidence = Evidence.model_validate_json(texts[EVIDENCE])
        slack_text = redact(texts.get(MESSAGE, ""))
        links.append(LiveLink(run.data.tags.get("job_id", ""), str(evidence.url), slack_text, evidence))
    return links


def compose_arm(settings: Any, alias: str, links: list[LiveLink], concurrency: int) -> Arm:
    from composer.app_version import AppVersions, app_config, version_name
    from evaluation.dataset import ANY_THEME, EvalExample
    from evaluation.runner import _compose_then_close, build_pipeline, prompt_names

    examples = [
        EvalExample(
            id=f"live-{link.job_id or number}",
            url=link.url,
            slack_text=link.slack_text,
            expected_theme=ANY_THEME,
            evidence=link.evidence,
        )
        for number, link in enumerate(links)
    ]
    pipeline, prompts, llm = build_pipeline(settings, alias)
    versions = {name: prompts.get(name).version for name in prompt_names(settings)}
    config = app_config(settings, versions)
    model_id = AppVersions(settings.mlflow_tracking_uri, settings.mlflow_experiment_name).register(config)
    results = asyncio.run(_compose_then_close(pipeline, llm, examples, concurrency))
    return Arm(alias, results, version_name(config), model_id, versions)


@dataclass(frozen=True)
class Limits:
    tolerance: float = 0.05  # gate pass rate and grounding may drop this much
    max_cost_ratio: float = 1.5  # cost per reply at most this many times @prod's
    max_latency_ratio: float = 1.5  # p95 latency at most this many times @prod's ...
    min_latency_delta: float = 2.0  # ... unless within this many seconds of it (a process's warm-up, a few links)


def verdict(candidate: Arm, baseline: Arm, limits: Limits) -> list[str]:
    """Why the candidate fails the canary; empty when it passes."""
    new, old = candidate.metrics(), baseline.metrics()
    reasons = []
    if candidate.errors > baseline.errors:
        reasons.append(f"{candidate.errors} of {len(candidate.results)} links got no reply (@prod: {baseline.errors})")
    for name in ("gate_pass_rate", "grounding_mean"):
        if new[name] < old[name] - limits.tolerance:
            reasons.append(f"{name} {new[name]:.3f} vs {old[name]:.3f}")
    if old["cost_per_reply_usd"] > 0 and new["cost_per_reply_usd"] > old["cost_per_reply_usd"] * limits.max_cost_ratio:
        reasons.append(f"cost per reply {new['cost_per_reply_usd']:.5f} vs {old['cost_per_reply_usd']:.5f} USD")
    slower = new["p95_latency_seconds"] - old["p95_latency_seconds"]
    if new["p95_latency_seconds"] > old["p95_latency_seconds"] * limits.max_latency_ratio and (
        slower > limits.min_latency_delta
    ):
        reasons.append(f"p95 latency {new['p95_latency_seconds']:.2f} vs {old['p95_latency_seconds']:.2f} s")
    return reasons


def log_canary(client: Any, candidate: Arm, baseline: Arm, links: list[LiveLink], reasons: list[str]) -> str:
    """The comparison as a run of technoshare_canary, linked to both app versions (LoggedModels)."""
    from mlflow.entities import LoggedModelInput, Metric, RunTag

    found = client.get_experiment_by_name(CANARY_EXPERIMENT)
    experiment_id = found.experiment_id if found else client.create_experiment(CANARY_EXPERIMENT)
    run = client.create_run(experiment_id, run_name=f"canary @{candidate.alias} {candidate.app_version}")
    metrics = {f"candidate_{k}": v for k, v in candidate.metrics().items()}
    metrics |= {f"baseline_{k}": v for k, v in baseline.metrics().items()} | {"links": float(len(links))}
    tags = {
        "candidate_alias": candidate.alias,
        "candidate_app_version": candidate.app_version,
        "baseline_alias": baseline.alias,
        "baseline_app_version": baseline.app_version,
        "passed": str(not reasons).lower(),
        "reasons": "; ".join(reasons)[:5000],
    }
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(key, value, 0, 0) for key, value in metrics.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    models = [LoggedModelInput(arm.app_version_id) for arm in (candidate, baseline) if arm.app_version_id]
    if models:
        client.log_inputs(run.info.run_id, models=models)
    client.set_terminated(run.info.run_id, "FINISHED" if not reasons else "FAILED")
    return str(run.info.run_id)


def last_canary_passed(client: Any, app_version: str) -> bool:
    """Whether the latest canary of this app version passed (technoshare-eval --require-canary)."""
    experiment = client.get_experiment_by_name(CANARY_EXPERIMENT)
    if experiment is None:
        return False
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.candidate_app_version = '{app_version}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return bool(runs) and runs[0].data.tags.get("passed") == "true"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alias", default="staging", help="the prompts to try (default staging)")
    parser.add_argument("--baseline", default="prod", help="what they are compared with (default prod)")
    parser.add_argument("--links", type=int, default=20, help="the last N live links (default 20)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=Limits.tolerance)
    parser.add_argument("--max-cost-ratio", type=float, default=Limits.max_cost_ratio)
    parser.add_argument("--max-latency-ratio", type=float, default=Limits.max_latency_ratio)
    parser.add_argument("--min-latency-delta", type=float, default=Limits.min_latency_delta, help="seconds")
    parser.add_argument("--promote", action="store_true", help="on a pass, move the baseline alias to the candidate")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`technoshare-canary` (make canary): 0 on a pass, 1 on a fail, 2 when it cannot run."""
    args = parse_args(argv)
    from mlflow import MlflowClient

    from composer.prompts import PromptRegistry
    from composer.settings import ComposerSettings
    from evaluation.runner import prompt_names
    from technoshare_common.tracing import lean_mlflow_client, use_tracking_uri

    lean_mlflow_client()
    settings = ComposerSettings()
    tracking_uri = settings.mlflow_tracking_uri
    if not tracking_uri:
        print("MLFLOW_TRACKING_URI is not set (make canary starts the local stack and sets it)", file=sys.stderr)
        return 2
    settings = settings.model_copy(update={"stage_a_tools": False})  # the pinned evidence only: nothing is fetched
    use_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    registry = PromptRegistry(tracking_uri)
    try:
        for alias in (args.alias, args.baseline):
            missing = [name for name in prompt_names(settings) if registry.alias_version(name, alias) is None]
            if missing:
                print(f"prompts {missing} have no alias @{alias} (technoshare-prompt-alias set …)", file=sys.stderr)
                return 2
        links = live_links(client, args.links)
    except Exception as exc:  # MLflow unreachable or refusing: the canary cannot run, which is not a fail
        print(f"MLflow at {tracking_uri} cannot be read: {exc}", file=sys.stderr)
        return 2
    if not links:
        print("no live job with pinned evidence in MLflow yet: nothing to run the canary on", file=sys.stderr)
        return 2
    compose_arm(settings, args.baseline, links[:1], 1)  # untimed: the process's warm-up (models, caches) is no arm's
    candidate = compose_arm(settings, args.alias, links, args.concurrency)
    baseline = compose_arm(settings, args.baseline, links, args.concurrency)
    if baseline.errors == len(baseline.results):
        print(f"@{args.baseline} got no reply on any link: is llm-gateway up? Nothing to compare", file=sys.stderr)
        return 2
    limits = Limits(args.tolerance, args.max_cost_ratio, args.max_latency_ratio, args.min_latency_delta)
    reasons = verdict(candidate, baseline, limits)
    run_id = log_canary(client, candidate, baseline, links, reasons)
    table = {"@" + arm.alias: arm.metrics() for arm in (candidate, baseline)}
    print(json.dumps({"links": len(links), **table}, indent=2))
    print(
        f"{'PASS' if not reasons else 'FAIL'}: "
        + ("; ".join(reasons) or f"@{args.alias} is no worse than @{args.baseline}")
    )
    print(f"MLflow run {run_id} (experiment {CANARY_EXPERIMENT})")
    if args.promote and not reasons:
        for name, version in candidate.prompt_versions.items():  # what was tested, even if @alias moved since
            registry.set_alias(name, args.baseline, int(version))
            print(f"promoted {name}: @{args.baseline} -> version {version}")
    return 0 if not reasons else 1
