"""The chart's dispatch concurrency reaches ingest as DISPATCH_CONCURRENCY, and its default is the code's: a
deployment gets the throughput benchmarks/pipeline_throughput.py measured for the defaults."""

from ingest.settings import IngestSettings
from tests.support.helm import CHART, CI_DEFAULTS, deployments, helm, render


def _ingest_env(*args: str) -> dict[str, str]:
    (container,) = deployments(render(*args))["ingest"]["containers"]
    return {entry["name"]: entry.get("value", "") for entry in container["env"]}


def test_ingest_gets_the_charts_dispatch_concurrency_whose_default_is_the_codes() -> None:
    default = IngestSettings.model_fields["dispatch_concurrency"].default
    assert _ingest_env()["DISPATCH_CONCURRENCY"] == str(default)
    assert _ingest_env("--set", "ingest.dispatchConcurrency=48")["DISPATCH_CONCURRENCY"] == "48"
    refused = helm("template", "t", str(CHART), "-f", str(CI_DEFAULTS), "--set", "ingest.dispatchConcurrency=0")
    assert refused.returncode != 0 and "dispatchConcurrency" in refused.stderr
