"""The evaluation suite: data/eval_dataset.json through the pipeline as a dry run, scored with
mlflow.genai.evaluate, logged to the MLflow experiment `technoshare_eval`.

    make eval                                            # prompts at @prod, against the local stack
    python scripts/run_eval.py --alias candidate         # also runs @prod on the same examples and compares
    python scripts/run_eval.py --alias candidate --promote   # then moves @prod to the candidate if it is better

Exit status: 0 when the pass rate reaches --min-pass-rate and nothing regressed beyond --tolerance,
1 when it does not, 2 on bad input (dataset, aliases, MLflow unreachable).
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from composer.evaluation.runner import EvalSummary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT / "data" / "eval_dataset.json")
    parser.add_argument("--alias", default="prod", help="prompt alias to evaluate (default prod)")
    parser.add_argument("--baseline", default="prod", help="alias the candidate is compared with (default prod)")
    parser.add_argument("--min-pass-rate", type=float, default=0.8, help="fail below this pass rate (0.8)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed drop in pass rate vs the baseline")
    parser.add_argument("--limit", type=int, default=None, help="only the first N examples")
    parser.add_argument("--concurrency", type=int, default=1, help="examples composed at once (1)")
    parser.add_argument("--repair-attempts", type=int, default=None, help="override GATE_REPAIR_ATTEMPTS")
    parser.add_argument("--judge-model", default=os.environ.get("EVAL_JUDGE_MODEL"), help="LLM judge (optional)")
    parser.add_argument("--output", type=Path, default=ROOT / ".run" / "eval_results.json")
    parser.add_argument("--promote", action="store_true", help="move prod to the evaluated alias if it passes")
    parser.add_argument("--local-stack", action="store_true", help="use the local stack's settings (make eval)")
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
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.promote and args.baseline != "prod":
        print("--promote compares with prod: leave --baseline at prod", file=sys.stderr)
        return 2
    if args.composer_url and (args.alias != "prod" or args.baseline != "prod" or args.promote):
        print("--composer-url evaluates what that composer serves; compare aliases in-process", file=sys.stderr)
        return 2
    compare = args.baseline != args.alias
    if args.local_stack:
        import stack

        os.environ |= {key: value for key, value in stack.service_env().items() if key not in os.environ}
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from technoshare_common.tracing import lean_mlflow_client

    lean_mlflow_client()
    import mlflow

    from composer.evaluation import runner
    from composer.evaluation.dataset import DatasetError, load_dataset
    from composer.evaluation.scorers import hard_scorers, llm_judge, soft_scorers
    from composer.gates import GateConfig
    from composer.projects import load_projects
    from composer.prompts import PromptRegistry
    from composer.settings import ComposerSettings

    settings = ComposerSettings()
    if not settings.mlflow_tracking_uri:
        print("MLFLOW_TRACKING_URI is not set (make eval starts the local stack and sets it)", file=sys.stderr)
        return 2
    updates: dict[str, object] = {"stage_a_tools": False}  # tools would fetch live pages: inputs stay pinned
    if args.repair_attempts is not None:
        updates["repair_attempts"] = args.repair_attempts
    settings = settings.model_copy(update=updates)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)

    themes = {project.theme for project in load_projects(settings.projects_file)}
    try:
        dataset = load_dataset(args.dataset, themes)
    except DatasetError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.limit:
        dataset.examples = dataset.examples[: args.limit]
    gates = GateConfig.from_settings(settings, themes)
    judge = None
    if args.judge_model:
        judge = llm_judge(settings.llm_gateway_url, settings.internal_token_value() or "local", args.judge_model)
    scorers = hard_scorers(gates) + soft_scorers(judge)

    registry = PromptRegistry(settings.mlflow_tracking_uri)
    # Through a composer, its prompts are what it serves (the registry's, or its YAML): nothing to check here.
    aliases = [] if args.composer_url else [args.alias] + ([args.baseline] if compare else [])
    try:
        for alias in aliases:
            for name in runner.PROMPTS:
                if registry.alias_version(name, alias) is None:
                    print(f"prompt {name} has no alias @{alias} (scripts/prompt_alias.py set …)", file=sys.stderr)
                    return 2
    except Exception as exc:
        print(f"MLflow at {settings.mlflow_tracking_uri} is unreachable: {exc}", file=sys.stderr)
        return 2

    summary = runner.run_suite(settings, dataset, args.alias, scorers, args.concurrency, args.composer_url)
    print_summary(summary)
    comparison = None
    regressed = False
    if compare:
        baseline = runner.run_suite(settings, dataset, args.baseline, scorers, args.concurrency)
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

    passed = summary.pass_rate >= args.min_pass_rate and not regressed
    reasons = []
    if summary.pass_rate < args.min_pass_rate:
        reasons.append(f"pass rate {summary.pass_rate:.1%} is below {args.min_pass_rate:.0%}")
    if regressed:
        reasons.append(f"@{args.alias} regressed against @{args.baseline}")
    print(f"\n{'PASS' if passed else 'FAIL'}: " + ("; ".join(reasons) or f"pass rate {summary.pass_rate:.1%}"))
    print(f"results: {args.output}; MLflow run {runner.run_link(settings.mlflow_tracking_uri, summary)}")
    if args.promote:
        if args.alias == "prod":
            print("nothing to promote: the evaluated alias is prod")
        elif not passed:
            print(f"not promoting @{args.alias}: it did not pass")
        else:
            for name, version in summary.prompt_versions.items():
                registry.set_alias(name, "prod", int(version))
                print(f"promoted {name}: @prod -> version {version}")
    return 0 if passed else 1


def print_summary(summary: "EvalSummary") -> None:
    print(f"\n@{summary.alias} {summary.prompt_versions} ({summary.app_version}), {summary.seconds:.0f}s")
    for result in summary.results:
        failed = [name for name, value in result.scores.items() if value < 1.0]
        mark = "pass" if result.passed else "FAIL"
        print(f"  {mark}  {result.id:<40} {result.outcome:<12} repaired={result.repaired!s:<5} below 1: {failed}")
    metrics = summary.metrics
    print(
        f"  pass rate {metrics['overall_pass_rate']:.1%} ({summary.passed}/{summary.total}); without repair "
        f"{metrics['pass_rate_without_repair']:.1%}; grounding {metrics.get('grounding_mean', 0):.2f}; "
        f"relevance {metrics.get('relevance_mean', 0):.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
