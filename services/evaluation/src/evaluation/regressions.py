"""Replies people voted on, frozen into regression cases the evaluation and promotion must pass.

`make sync-regressions` (technoshare-sync-regressions) finds the live jobs whose reply got a vote (feedback
`user_reaction` on its trace, from a reaction or a button; the last vote wins), reads what the job's MLflow run
pinned (the evidence it was composed from, the reply, the Slack message, all redacted), merges each into the MLflow
evaluation dataset `technoshare_regressions` (one record per job: a new vote updates it), then writes that dataset
to data/regression_cases.json, where a person may also have set a case's `expected_theme`.

The evaluation reads the file: each case is an example of split `regression`, composed again from its pinned
evidence, and a candidate that fails a case @prod passes is refused (evaluation.runner.Comparison). Once a person
confirms a case (`confirmed`, kept across syncs while the vote stands), a thumbs-down reply is also a recorded bad
reply the gates must refuse, and a thumbs-up one a good reply they must pass.
Nothing personal is kept: no user names or ids, and texts pass through technoshare_common.redaction.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from evaluation.dataset import ANY_THEME, DatasetError, EvalExample, Split
from evaluation.job_runs import EVIDENCE, JOBS_EXPERIMENT, MESSAGE, REPLY, run_artifacts
from evaluation.negatives import RecordedReply
from technoshare_common.redaction import redact
from technoshare_common.schemas import Evidence
from technoshare_common.settings import REPO_DATA_DIR

DATASET_NAME = "technoshare_regressions"
FEEDBACK_NAME = "user_reaction"  # ingest.feedback's assessment
PAGE = 500  # traces per search_traces call, the server's cap


class RegressionCase(BaseModel):
    id: str = Field(pattern=r"^regression-[A-Za-z0-9]+$")
    url: str
    slack_text: str = ""
    label: Literal["good", "bad"] = Field(description="bad: voted down, a reply that must be refused; good: voted up.")
    reply: dict[str, Any] = Field(description="The reply as it was posted: tldr, summary, projects.")
    expected_theme: str | None = Field(None, description="Set by a person: the theme a good reply names.")
    confirmed: bool = Field(
        False,
        description="Set by a person after triage: the gates must refuse this voted-down reply (or pass this voted-up "
        "one), and the run fails until they do. Until then the case is composed and reported, and a candidate may "
        "still not fail it where @prod passes. Many votes are about what no gate checks (tone, the team's interest).",
    )
    trace_id: str = ""
    evidence: Evidence

    def example(self) -> EvalExample:
        return EvalExample(
            id=self.id,
            url=self.url,
            slack_text=self.slack_text,
            expected_theme=self.expected_theme or ANY_THEME,
            tags=["regression", self.label],
            split=Split.regression,
            evidence=self.evidence,
        )

    def recorded(self) -> RecordedReply:
        note = f"voted {self.label} in Slack ({self.trace_id})"
        return RecordedReply(example_id=self.id, label=self.label, reply=self.reply, note=note)


class RegressionCases(BaseModel):
    description: str = ""
    cases: list[RegressionCase] = Field(default_factory=list)


def load_regression_cases(path: Path) -> list[RegressionCase]:
    """The file's cases; none when it does not exist (no vote synced yet)."""
    if not path.exists():
        return []
    try:
        cases = RegressionCases.model_validate_json(path.read_text(encoding="utf-8")).cases
    except ValidationError as exc:
        raise DatasetError(f"{path} is not a valid file of regression cases:\n{exc}") from exc
    ids = [case.id for case in cases]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise DatasetError(f"{path}: duplicate case ids {duplicates}")
    return cases


def _last_vote(trace: Any) -> bool | None:
    votes = [a for a in trace.info.assessments or [] if a.name == FEEDBACK_NAME and getattr(a, "valid", True)]
    if not votes:
        return None
    return bool(max(votes, key=lambda a: a.last_update_time_ms or a.create_time_ms or 0).value)


def _traces(client: Any, experiment_id: str, max_traces: int) -> list[Any]:
    """The experiment's latest traces without their spans, page by page (the server caps a page at 500)."""
    traces: list[Any] = []
    token = None
    while len(traces) < max_traces:
        page = client.search_traces(
            locations=[experiment_id],
            max_results=min(PAGE, max_traces - len(traces)),
            include_spans=False,
            order_by=["timestamp DESC"],
            page_token=token,
        )
        traces += page
        token = page.token
        if not token:
            break
    return traces


def voted_cases(client: Any, max_traces: int = 5000) -> list[RegressionCase]:
    """The jobs whose reply got a vote, among the latest `max_traces`, each read from the job's run (its pinned
    artifacts)."""
    experiment = client.get_experiment_by_name(JOBS_EXPERIMENT)
    if experiment is None:
        return []
    traces = _traces(client, experiment.experiment_id, max_traces)
    cases = []
    for trace in traces:
        vote = _last_vote(trace)
        run_id = trace.info.tags.get("run_id")
        job_id = trace.info.tags.get("job_id", "")
        if vote is None or not run_id or not job_id.isalnum():
            continue
        try:  # one run deleted, or pinned before its artifacts existed, is skipped, not the sync
            case = _case(client, run_id, job_id, trace.info.trace_id, vote)
        except Exception as exc:
            print(f"skipping the vote on job {job_id} (run {run_id}): {exc}", file=sys.stderr)
            continue
        if case is not None:
            cases.append(case)
    return cases


def _case(client: Any, run_id: str, job_id: str, trace_id: str, vote: bool) -> RegressionCase | None:
    texts = run_artifacts(client, run_id)
    if EVIDENCE not in texts or REPLY not in texts:
        raise ValueError("the run pinned no evidence or reply")
    stage_b = json.loads(texts[REPLY])
    if not stage_b.get("reply"):
        return None
    evidence = Evidence.model_validate_json(texts[EVIDENCE])
    return RegressionCase(
        id=f"regression-{job_id[:16]}",
        url=str(evidence.url),
        slack_text=redact(texts.get(MESSAGE, "")),  # runs logged before the message was kept have none
        label="good" if vote else "bad",
        reply=stage_b["reply"],
        trace_id=trace_id,
        evidence=evidence,
    )


def merge_into_dataset(cases: list[RegressionCase]) -> Any:
    """The cases in the MLflow evaluation dataset, one record per job (inputs: the job's), created on first use."""
    from mlflow.exceptions import MlflowException
    from mlflow.genai import datasets

    try:
        dataset = datasets.get_dataset(name=DATASET_NAME)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        dataset = datasets.create_dataset(name=DATASET_NAME)
    if cases:
        dataset.merge_records(
            [
                {
                    "inputs": {
                        "case_id": case.id,
                        "url": case.url,
                        "slack_text": case.slack_text,
                        "evidence": case.evidence.model_dump(mode="json"),
                    },
                    "expectations": {"label": case.label, "reply": case.reply, "trace_id": case.trace_id},
                }
                for case in cases
            ]
        )
    return datasets.get_dataset(name=DATASET_NAME)


def dataset_cases(dataset: Any, earlier: list[RegressionCase]) -> list[RegressionCase]:
    """The dataset's records as cases, one per job (a record whose inputs changed, say by a new redaction, is
    merged as another: the latest wins), keeping what a person set in the file earlier: a theme, and a triage
    while the vote stands."""
    themes = {case.id: case.expected_theme for case in earlier if case.expected_theme}
    triaged = {(case.id, case.label): case.confirmed for case in earlier}
    frame = dataset.to_df()
    order = next((column for column in ("last_update_time", "created_time") if column in frame.columns), None)
    records = (frame.sort_values(order) if order else frame).to_dict("records")
    cases: dict[str, RegressionCase] = {}
    for record in records:
        inputs, expectations = record["inputs"], record.get("expectations") or {}
        case_id, label = inputs["case_id"], expectations["label"]
        cases[case_id] = RegressionCase(
            id=case_id,
            url=inputs["url"],
            slack_text=inputs.get("slack_text", ""),
            label=label,
            reply=expectations["reply"],
            expected_theme=expectations.get("expected_theme") or themes.get(case_id),
            confirmed=triaged.get((case_id, label), False),
            trace_id=expectations.get("trace_id", ""),
            evidence=Evidence.model_validate(inputs["evidence"]),
        )
    return sorted(cases.values(), key=lambda case: case.id)


def _earlier_cases(path: Path) -> list[RegressionCase]:
    """What the last sync wrote, leniently: a file that `load_regression_cases` refuses (say, duplicate ids) must not
    stop the sync that rewrites it."""
    try:
        return load_regression_cases(path)
    except DatasetError:
        if not path.exists():
            return []
        try:
            cases = {case["id"]: case for case in json.loads(path.read_text(encoding="utf-8")).get("cases", [])}
            return [RegressionCase.model_validate(case) for case in cases.values()]
        except (ValueError, ValidationError):
            return []


def sync(tracking_uri: str, output: Path) -> list[RegressionCase]:
    from mlflow import MlflowClient

    from technoshare_common.tracing import lean_mlflow_client, use_tracking_uri

    lean_mlflow_client()
    use_tracking_uri(tracking_uri)
    earlier = _earlier_cases(output)
    dataset = merge_into_dataset(voted_cases(MlflowClient(tracking_uri)))
    cases = dataset_cases(dataset, earlier)
    document = RegressionCases(
        description="Replies voted on in Slack, frozen with the evidence they were made from "
        "(make sync-regressions, from the MLflow evaluation dataset technoshare_regressions).",
        cases=cases,
    )
    output.write_text(document.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return cases


def main(argv: list[str] | None = None) -> int:
    """`technoshare-sync-regressions` (make sync-regressions)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""))
    parser.add_argument("--output", type=Path, default=REPO_DATA_DIR / "regression_cases.json")
    args = parser.parse_args(argv)
    if not args.tracking_uri:
        print("MLFLOW_TRACKING_URI is not set", file=sys.stderr)
        return 2
    cases = sync(args.tracking_uri, args.output)
    bad = sum(case.label == "bad" for case in cases)
    print(f"{len(cases)} regression cases ({bad} voted down) -> {args.output}")
    return 0
