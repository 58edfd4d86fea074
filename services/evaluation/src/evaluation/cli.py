"""The evaluation suite: data/eval_dataset.json through the pipeline as a dry run, scored with
mlflow.genai.evaluate, logged to the MLflow experiment `technoshare_eval`; and the recorded replies of
data/eval_replies.json through the gates, every bad one of which must be refused.

    make eval                                          # prompts at @prod, in the local stack's environment
    technoshare-eval --alias candidate                 # also runs @prod on the same examples and compares
    technoshare-eval --alias candidate --promote       # then moves @prod to the candidate if it is better

Exit status: 0 when the pass rate reaches --min-pass-rate, nothing regressed beyond --tolerance and every
recorded bad reply is refused; 1 when not; 2 on bad input (dataset, replies, aliases, MLflow unreachable).
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from technoshare_common.settings import REPO_DATA_DIR

if TYPE_CHECKING:
    from evaluation.runner import EvalSummary

DEFAULT_OUTPUT = REPO_DATA_DIR.parent / ".run" / "eval_results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=None, help="default: eval_dataset.json in the data folder")
    parser.add_argument(
        "--replies", type=Path, default=None, help="recorded good and bad replies (default: eval_replies.json there)"
    )
    parser.add_argument(
        "--regressions",
        type=Path,
        default=None,
        help="replies voted on in Slack (default: regression_cases.json there, if make sync-regressions wrote it)",
    )
    parser.add_argument("--alias", default="prod", help="prompt alias to evaluate (default prod)")
    parser.add_argument("--baseline", default="prod", help="alias the candidate is compared with (default prod)")
    parser.add_argument("--min-pass-rate", type=float, default=0.8, help="fail below this pass rate (0.8)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed drop in pass rate vs the baseline")
    parser.add_argument("--limit", type=int, default=None, help="only the first N examples")
    parser.add_argument("--concurrency", type=int, default=1, help="examples composed at once (1)")
    parser.add_argument("--repair-attempts", type=int, default=None, help="override GATE_REPAIR_ATTEMPTS")
    parser.add_argument("--judge-model", default=os.environ.get("EVAL_JUDGE_MODEL"), help="LLM judge (optional)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--promote", action="store_true", help="move --promote-to to the evaluated alias if it passes")
    parser.add_argument(
        "--promote-to",
        choices=("prod", "staging"),
        default="prod",
        help="the alias --promote moves: staging, for a shadow canary (technoshare-canary) to move on to prod",
    )
    parser.add_argument(
        "--require-canary",
        action="store_true",
        help="promote to prod only an app version whose last shadow canary passed (experiment technoshare_canary)",
    )
    parser.add_argument(
        "--composer-url",
        default=os.environ.get("EVAL_COMPOSER_URL"),
        help="compose through this composer's /v1/compose (its own prompts) instead of in this process",
    )
    parser.add_argument(
        "--pushgateway",
        default=os.environ.get("EVAL_PUSHGATEWAY_URL"),
        help="push the pass rate to this Prometheus Pushgateway (host:port)",
    )
    return parser.parse_args(argv)


# mlflow.genai.evaluate scores 10 examples at once with 10 scorers each by default: up to 100 requests at once
# against the tracking server, which hung the local one-worker MLflow on SQLite with 60 examples. The scorers
# are this process's own CPU work (the judge aside), so two at a time loses nothing. Set either to override.
EVALUATE_WORKERS = {"MLFLOW_GENAI_EVAL_MAX_WORKERS": "2", "MLFLOW_GENAI_EVAL_MAX_SCORER_WORKERS": "1"}


def main(argv: list[str] | None = None) -> int:
    """The `technoshare-eval` command (make eval, make promote, the chart's eval CronJob)."""
    args = parse_args(argv)
    for name, value in EVALUATE_WORKERS.items():
        os.environ.setdefault(name, value)
    if args.promote and args.baseline != "prod":
        print("--promote compares with prod: leave --baseline at prod", file=sys.stderr)
        return 2
    if args.composer_url and (args.alias != "prod" or args.baseline != "prod" or args.promote):
        print("--composer-url evaluates what that composer serves; compare aliases in-process", file=sys.stderr)
        return 2
    compare = args.baseline != args.alias
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from technoshare_common.tracing import lean_mlflow_client, use_tracking_uri

    lean_mlflow_client()  # before mlflow is imported

    from mlflow import MlflowClient

    from composer.projects import load_projects
    from composer.prompts import PromptRegistry
    from composer.quality.gates import GateConfig
    from composer.settings import ComposerSettings
    from evaluation import runner
    from evaluation.canary import last_canary_passed
    from evaluation.dataset import DatasetError, load_dataset
    from evaluation.negatives import check_recorded_replies, load_recorded_replies
    from evaluation.regressions import load_regression_cases
    from evaluation.scorers import gate_contexts, hard_scorers, llm_judge, soft_scorers

    settings = ComposerSettings()
    tracking_uri = settings.mlflow_tracking_uri
    if not tracking_uri:
        print("MLFLOW_TRACKING_URI is not set (make eval starts the local stack and sets it)", file=sys.stderr)
        return 2
    updates: dict[str, object] = {"stage_a_tools": False}  # tools would fetch live pages: inputs stay pinned
    if args.repair_attempts is not None:
        updates["repair_attempts"] = args.repair_attempts
    settings = settings.model_copy(update=updates)
    use_tracking_uri(tracking_uri)

    projects = load_projects(settings.projects_file)
    themes = {project.theme for project in projects}
    try:
        dataset = load_dataset(args.dataset or settings.data_dir / "eval_dataset.json", themes)
        cases = load_regression_cases(args.regressions or settings.data_dir / "regression_cases.json")
        dataset.examples += [case.example() for case in cases]
        contexts = gate_contexts(dataset.examples, projects)  # every example: recorded replies may use any
        replies = load_recorded_replies(args.replies or settings.data_dir / "eval_replies.json", set(contexts))
        replies += [case.recorded() for case in cases if case.confirmed]  # triaged: the gates must agree
    except DatasetError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.limit:  # the first examples, and every regression case
        regression = [example for example in dataset.examples if example.split == "regression"]
        dataset.examples = [e for e in dataset.examples if e.split != "regression"][: args.limit] + regression
    gates = GateConfig.from_settings(settings, themes)
    judge = None
    if args.judge_model:
        judge = llm_judge(settings.llm_gateway_url, settings.internal_token_value() or "local", args.judge_model)
    scorers = hard_scorers(gates, contexts) + soft_scorers(gates, contexts, judge)
    negatives = check_recorded_replies(replies, gates, contexts)

    registry = PromptRegistry(tracking_uri)
    # Through a composer, its prompts are what it serves (the registry's, or its YAML): nothing to check here.
    aliases = [] if args.composer_url else [args.alias] + ([args.baseline] if compare else [])
    try:
        for alias in aliases:
            for name in runner.prompt_names(settings):
                if registry.alias_version(name, alias) is None:
                    print(f"prompt {name} has no alias @{alias} (technoshare-prompt-alias set …)", file=sys.stderr)
                    return 2
    except Exception as exc:
        print(f"MLflow at {tracking_uri} is unreachable: {exc}", file=sys.stderr)
        return 2

    summary = runner.run_suite(
        settings, dataset, args.alias, scorers, contexts, args.concurrency, args.composer_url, negatives
    )
    print_summary(summary)
    comparison = None
    regressed = False
    if compare:
        baseline = runner.run_suite(settings, dataset, args.baseline, scorers, contexts, args.concurrency)
        print_summary(baseline)
        compared = runner.Comparison(baseline, args.tolerance)
        regressed = compared.regressed(summary)
        comparison = runner.record_comparison(summary, compared)
        print(
            f"\n@{args.alias} vs @{args.baseline}: {summary.pass_rate:.1%} vs {baseline.pass_rate:.1%} "
            f"(tolerance {args.tolerance:.0%}); newly failing: {comparison['regressed_examples'] or 'none'}"
        )
    if args.pushgateway:
        runner.push_to_prometheus(args.pushgateway, summary)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(runner.results_document(summary, comparison), indent=2, ensure_ascii=False))

    reasons = []
    if summary.pass_rate < args.min_pass_rate:
        reasons.append(f"pass rate {summary.pass_rate:.1%} is below {args.min_pass_rate:.0%}")
    if regressed:
        reasons.append(f"@{args.alias} regressed against @{args.baseline}")
    if not negatives.all_refused:
        accepted = [f"{v.example_id} ({', '.join(v.missed) or 'every gate passed'})" for v in negatives.accepted]
        reasons.append(f"the gates accept recorded bad replies: {'; '.join(accepted)}")
    passed = not reasons
    print(f"\n{'PASS' if passed else 'FAIL'}: " + ("; ".join(reasons) or f"pass rate {summary.pass_rate:.1%}"))
    print(f"results: {args.output}; MLflow run {runner.run_link(tracking_uri, summary)}")
    if args.promote:
        target = args.promote_to
        canary_passed = not (args.require_canary and target == "prod") or last_canary_passed(
            MlflowClient(tracking_uri), summary.app_version
        )
        if args.alias == target:
            print(f"nothing to promote: the evaluated alias is {target}")
        elif not passed:
            print(f"not promoting @{args.alias}: it did not pass")
        elif not canary_passed:
            print(f"not promoting @{args.alias}: no passing shadow canary for {summary.app_version} (make canary)")
            return 1
        else:
            for name, version in summary.prompt_versions.items():
                registry.set_alias(name, target, int(version))
                print(f"promoted {name}: @{target} -> version {version}")
    return 0 if passed else 1


def print_summary(summary: "EvalSummary") -> None:
    print(f"\n@{summary.alias} {summary.prompt_versions} ({summary.app_version}), {summary.seconds:.0f}s")
    for result in summary.results:
        failed = [name for name, value in result.scores.items() if value < 1.0]
        mark = "pass" if result.passed else "FAIL"
        print(f"  {mark}  {result.id:<40} {result.outcome:<12} repaired={result.repaired!s:<5} below 1: {failed}")
    metrics = summary.metrics
    print(
        f"  pass rate {metrics['overall_pass_rate']:.1%} ({summary.passed}/{summary.total}); structural gates only "
        f"{metrics['structural_pass_rate']:.1%}; without repair {metrics['pass_rate_without_repair']:.1%}; "
        f"grounding {metrics['grounding_mean']:.2f}"
    )
    for key, results in summary.groups().items():
        passed = sum(r.passed for r in results)
        relevant = sum(r.scores.get("relevance", 0.0) == 1.0 for r in results)
        total = len(results)
        print(f"  {key:<16} pass {passed}/{total} ({passed / total:.0%}), relevance {relevant}/{total}")
    if summary.negatives is not None:
        negatives = summary.negatives
        print(f"  recorded bad replies refused: {negatives.refused_count}/{len(negatives.bad)}")
