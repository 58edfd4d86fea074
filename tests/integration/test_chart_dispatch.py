"""ingest runs as two Deployments: `ingest` acknowledges Slack and `dispatcher` does the work, so acks never wait
behind it. The chart's dispatch concurrency reaches the dispatcher as DISPATCH_CONCURRENCY, and its default is the
code's: a deployment gets the throughput benchmarks/pipeline_throughput.py measured for the defaults."""

from typing import Any

from ingest.settings import IngestSettings
from tests.support.helm import CHART, CI_DEFAULTS, deployments, helm, render


def _env(deployment: str, *args: str, rendered: dict[str, Any] | None = None) -> dict[str, str]:
    (container,) = (rendered or deployments(render(*args)))[deployment]["containers"]
    return {entry["name"]: entry.get("value", "") for entry in container["env"]}


def test_the_dispatcher_gets_the_charts_dispatch_concurrency_whose_default_is_the_codes() -> None:
    default = IngestSettings.model_fields["dispatch_concurrency"].default
    assert _env("dispatcher")["DISPATCH_CONCURRENCY"] == str(default)
    assert _env("dispatcher", "--set", "dispatcher.dispatchConcurrency=48")["DISPATCH_CONCURRENCY"] == "48"
    refused = helm("template", "t", str(CHART), "-f", str(CI_DEFAULTS), "--set", "dispatcher.dispatchConcurrency=0")
    assert refused.returncode != 0 and "dispatchConcurrency" in refused.stderr


def test_slacks_acks_and_the_work_run_in_deployments_of_their_own() -> None:
    rendered = deployments(render())
    acks, dispatcher = _env("ingest", rendered=rendered), _env("dispatcher", rendered=rendered)
    assert acks["INGEST_ROLE"] == "acks" and dispatcher["INGEST_ROLE"] == "dispatch"
    assert "DISPATCH_CONCURRENCY" not in acks
    # The pods facing the internet hold the signing secret and no service token; the dispatcher the reverse.
    assert "SLACK_SIGNING_SECRET" in acks and "TECHNOSHARE_INTERNAL_TOKEN" not in acks
    assert "SLACK_SIGNING_SECRET" not in dispatcher and "TECHNOSHARE_INTERNAL_TOKEN" in dispatcher
    # Composer's INGEST_URL is the job API, which the dispatcher serves.
    assert _env("composer", rendered=rendered)["INGEST_URL"].endswith("-dispatcher:3001")
    (acks_container,) = rendered["ingest"]["containers"]
    (dispatcher_container,) = rendered["dispatcher"]["containers"]
    assert acks_container["image"] == dispatcher_container["image"]
    assert "3001" in dispatcher_container["command"]
