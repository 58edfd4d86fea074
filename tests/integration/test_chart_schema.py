"""values.schema.json: helm refuses a mistyped value at template time (and `helm lint --strict` in `make chart-check`),
instead of rendering a chart that fails in the cluster or silently ignores the value."""

from pathlib import Path

import pytest

from tests.support.helm import CHART, helm

BAD_VALUES = {
    "a typo'd top-level key": (["--set", "replicaz=3"], "Additional property replicaz is not allowed"),
    "a typo'd component key": (["--set", "composer.replica=3"], "Additional property replica is not allowed"),
    "a string for replicas": (["--set-string", "ingest.replicas=2"], "ingest.replicas: Invalid type"),
    "an unknown pullPolicy": (["--set", "composer.image.pullPolicy=Often"], "composer.image.pullPolicy must be one"),
    "negative replicas": (["--set", "poster.replicas=-1"], "poster.replicas: Must be greater than or equal to 0"),
    "an unknown log level": (["--set", "global.logLevel=TRACE"], "global.logLevel must be one"),
    "an unknown HPA metric": (["--set", "composer.autoscaling.metric=rps"], "composer.autoscaling.metric must be one"),
}


@pytest.mark.parametrize("values, message", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_helm_refuses_bad_values(values: list[str], message: str) -> None:
    result = helm("template", "t", str(CHART), "--set", "secrets.slack.signingSecret=x", *values)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("values", sorted((CHART / "ci").glob("*.yaml")), ids=lambda path: path.name)
def test_the_ci_values_pass(values: Path) -> None:
    lint = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = helm("template", "t", str(CHART), "-f", str(values))
    assert rendered.returncode == 0, rendered.stderr


def test_the_signing_secret_is_left_to_the_templates() -> None:
    """The schema cannot require it: an existingSecret replaces it. The template's `required` names both."""
    missing = helm("template", "t", str(CHART))
    assert missing.returncode != 0
    assert "secrets.slack.signingSecret (or secrets.slack.existingSecret) is required" in missing.stderr
    assert "schema" not in missing.stderr
    generated = "secrets.internalToken.token=t,postgresql.password=p,minio.rootPassword=m"  # no cluster to keep them
    assert helm("template", "t", str(CHART), "--set", f"secrets.slack.existingSecret=slack,{generated}").returncode == 0
