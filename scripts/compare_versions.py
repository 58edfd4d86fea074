"""Two app versions side by side: offline evaluation, live quality, feedback, cost and latency.

    .venv/bin/python scripts/compare_versions.py technoshare-1a2b3c4d5e6f technoshare-6f5e4d3c2b1a \
        --mlflow http://127.0.0.1:5000 --prometheus http://127.0.0.1:9090 [--window 7d] [--json]

For each version (the `app_version` of runs, traces and series; composer.app_version):
- eval pass rate: the latest run of experiment technoshare_eval with that app version (or, without one, the eval
  CronJob's last push, technoshare_eval_pass_rate);
- live gate pass rate and grounding: technoshare_live_replies_total and technoshare_live_grounding over the window
  (Prometheus);
- feedback ratio: the share of thumbs-up among the votes (feedback user_reaction) on the version's traces (MLflow);
- cost per job and p95 latency: the version's job runs in technoshare_commentator (metrics cost_usd and
  latency_seconds_total; MLflow).
A figure with no data is `n/a`.
"""

import argparse
import json
import math
import statistics
import sys
from typing import Any

import httpx
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

JOBS_EXPERIMENT = "technoshare_commentator"
EVAL_EXPERIMENT = "technoshare_eval"
FEEDBACK_NAME = "user_reaction"
MAX_RUNS = 1000  # the version's latest job runs the cost and latency are taken from
MAX_TRACES = 500  # per page; the feedback ratio reads up to MAX_RUNS traces


def prometheus_value(prometheus: str, query: str) -> float | None:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=15)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


def live_quality(prometheus: str, version: str, window: str) -> dict[str, float | None]:
    selector = f'app_version="{version}"'
    replies = f"sum(increase(technoshare_live_replies_total{{{selector}}}[{window}]))"
    passed = f'sum(increase(technoshare_live_replies_total{{{selector},passed="true"}}[{window}]))'
    grounding = (
        f"sum(increase(technoshare_live_grounding_sum{{{selector}}}[{window}]))"
        f" / sum(increase(technoshare_live_grounding_count{{{selector}}}[{window}]))"
    )
    return {
        "live_gate_pass_rate": prometheus_value(prometheus, f"{passed} / {replies}"),
        "live_grounding_mean": prometheus_value(prometheus, grounding),
    }


def eval_pass_rate(client: MlflowClient, prometheus: str, version: str) -> float | None:
    experiment = client.get_experiment_by_name(EVAL_EXPERIMENT)
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id],
            f"tags.app_version = '{version}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if runs and "overall_pass_rate" in runs[0].data.metrics:
            return float(runs[0].data.metrics["overall_pass_rate"])
    return prometheus_value(prometheus, f'max(technoshare_eval_pass_rate{{app_version="{version}"}})')


def job_figures(client: MlflowClient, version: str) -> dict[str, float | None]:
    experiment = client.get_experiment_by_name(JOBS_EXPERIMENT)
    if experiment is None:
        return {"cost_per_job_usd": None, "p95_latency_seconds": None, "feedback_positive_ratio": None, "jobs": 0}
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.app_version = '{version}' and tags.dry_run = 'false'",
        order_by=["attributes.start_time DESC"],
        max_results=MAX_RUNS,
    )
    costs = [run.data.metrics["cost_usd"] for run in runs if "cost_usd" in run.data.metrics]
    latencies = sorted(
        run.data.metrics["latency_seconds_total"] for run in runs if "latency_seconds_total" in run.data.metrics
    )
    p95 = latencies[max(0, math.ceil(len(latencies) * 0.95) - 1)] if latencies else None
    return {
        "cost_per_job_usd": statistics.fmean(costs) if costs else None,
        "p95_latency_seconds": p95,
        "feedback_positive_ratio": feedback_ratio(client, experiment.experiment_id, version),
        "jobs": float(len(runs)),
    }


def feedback_ratio(client: MlflowClient, experiment_id: str, version: str) -> float | None:
    """The share of thumbs-up among the version's traces' votes (each voter's last vote counts once per trace)."""
    votes: list[bool] = []
    token = None
    read = 0
    while read < MAX_RUNS:
        page = client.search_traces(
            locations=[experiment_id],
            filter_string=f"tag.app_version = '{version}'",
            max_results=MAX_TRACES,
            include_spans=False,
            page_token=token,
        )
        read += len(page)
        for trace in page:
            latest: dict[str, Any] = {}
            for assessment in trace.info.assessments or []:
                if assessment.name == FEEDBACK_NAME:
                    voter = assessment.source.source_id
                    when = assessment.last_update_time_ms or 0
                    if voter not in latest or when >= latest[voter][0]:
                        latest[voter] = (when, bool(assessment.value))
            votes += [vote for _, vote in latest.values()]
        token = page.token
        if not token:
            break
    return sum(votes) / len(votes) if votes else None


def compare(client: MlflowClient, prometheus: str, versions: list[str], window: str) -> dict[str, dict[str, Any]]:
    return {
        version: {"eval_pass_rate": eval_pass_rate(client, prometheus, version)}
        | live_quality(prometheus, version, window)
        | job_figures(client, version)
        for version in versions
    }


ROWS = (
    ("eval_pass_rate", "eval pass rate", "{:.1%}"),
    ("live_gate_pass_rate", "live gate pass rate", "{:.1%}"),
    ("live_grounding_mean", "live grounding (mean)", "{:.3f}"),
    ("feedback_positive_ratio", "feedback 👍 ratio", "{:.1%}"),
    ("cost_per_job_usd", "cost per job (USD)", "{:.5f}"),
    ("p95_latency_seconds", "p95 latency (s)", "{:.2f}"),
    ("jobs", "job runs read", "{:.0f}"),
)


def table(figures: dict[str, dict[str, Any]]) -> str:
    versions = list(figures)
    lines = [" | ".join(["figure", *versions]), " | ".join(["---"] * (len(versions) + 1))]
    for key, label, fmt in ROWS:
        cells = [fmt.format(figures[v][key]) if figures[v].get(key) is not None else "n/a" for v in versions]
        lines.append(" | ".join([label, *cells]))
    return "\n".join(f"| {line} |" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("versions", nargs=2, help="two app versions (technoshare-…)")
    parser.add_argument("--mlflow", default="http://127.0.0.1:5000", help="MLflow tracking URI")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--window", default="7d", help="the live figures' window (a PromQL duration, 7d)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        figures = compare(MlflowClient(args.mlflow), args.prometheus, args.versions, args.window)
    except (httpx.HTTPError, OSError) as exc:
        print(f"cannot read Prometheus at {args.prometheus}: {exc}", file=sys.stderr)
        return 2
    except MlflowException as exc:
        print(f"cannot read MLflow at {args.mlflow}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures, indent=2) if args.json else table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
