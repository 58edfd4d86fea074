"""make chart-check: lints, renders and validates charts/technoshare, its alert rules and its dashboard.

- helm lint --strict, and helm template, with the default values and with external database/S3 values;
- kubernetes-validate --strict on every rendered manifest; the custom resources it has no schema for
  (ServiceMonitor, PrometheusRule, HTTPRoute) against their CRDs' JSON schemas (scripts/crd_validate);
- promtool check rules on the alert file and on the rendered PrometheusRule; promtool test rules;
- the chart's copies of data/ (prompts, projects, prices) are identical to data/;
- the dashboard is valid JSON and every panel has a PromQL query.
The dashboard's queries run against a real Prometheus in tests/e2e/test_dashboard_queries.py.
"""

import filecmp
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "technoshare"
TOOLS = ROOT / ".cache" / "tools"
HELM = TOOLS / "helm" / "helm"
PROMTOOL = TOOLS / "prometheus" / "usr" / "bin" / "promtool"
VALUES = {"default": CHART / "ci" / "default-values.yaml", "external": CHART / "ci" / "external-values.yaml"}
CRD_VALIDATOR = ROOT / "scripts" / "crd_validate"
NO_SCHEMA = re.compile(r"Couldn't find schema for kind (\S+) with api version (\S+)")


def run(*command: str | Path) -> str:
    completed = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(map(str, command))}\n{completed.stdout}{completed.stderr}")
    return completed.stdout


def render(name: str, values: Path, folder: Path) -> tuple[Path, list[dict]]:
    run(HELM, "lint", "--strict", CHART, "-f", values)
    manifest = folder / f"{name}.yaml"
    manifest.write_text(run(HELM, "template", "technoshare", CHART, "--namespace", "technoshare", "-f", values))
    documents = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    return manifest, documents


def validate(manifest: Path, documents: list[dict]) -> str:
    """Core kinds by kubernetes-validate, the custom kinds it cannot check by their CRDs' schemas."""
    output = run(ROOT / ".venv" / "bin" / "kubernetes-validate", "--strict", "--quiet", manifest)
    lines = [line for line in output.splitlines() if line.strip()]
    problems = [line for line in lines if not NO_SCHEMA.search(line)]
    if problems:
        raise SystemExit("kubernetes-validate:\n" + "\n".join(problems))
    custom_kinds = {match.groups() for line in lines if (match := NO_SCHEMA.search(line))}
    custom = [doc for doc in documents if (doc["kind"], doc["apiVersion"]) in custom_kinds]
    for document in custom:
        if document["apiVersion"].startswith("monitoring.coreos.com/"):
            assert document["metadata"]["labels"].get("release"), f"{document['metadata']['name']}: no release label"
    resources = manifest.with_suffix(".custom.json")
    resources.write_text(json.dumps(custom))
    return run("node", CRD_VALIDATOR / "validate.mjs", resources).strip()


def check_rules(documents: list[dict], folder: Path) -> None:
    [rule] = [document for document in documents if document["kind"] == "PrometheusRule"]
    rendered = folder / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    run(PROMTOOL, "check", "rules", CHART / "files" / "alerts.yaml", rendered)


def check_data_copies() -> None:
    pairs = [(CHART / "files" / "data" / path.relative_to(ROOT / "data"), path) for path in data_files()]
    stale = [str(c.relative_to(ROOT)) for c, src in pairs if not c.exists() or not filecmp.cmp(c, src, shallow=False)]
    if stale:
        raise SystemExit(f"chart copies differ from data/: {stale}; run: make chart-data")


def data_files() -> list[Path]:
    data = ROOT / "data"
    return [data / "projects.yaml", data / "model_prices.yaml", *sorted((data / "prompts").glob("*.yaml"))]


def check_dashboard() -> int:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    empty = [panel["title"] for panel in dashboard["panels"] if not panel.get("targets")]
    if empty:
        raise SystemExit(f"dashboard panels without a query: {empty}")
    return len(queries)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, values in VALUES.items():
            manifest, documents = render(name, values, folder)
            custom = validate(manifest, documents)
            kinds = sorted({document["kind"] for document in documents})
            print(f"{name} values: {len(documents)} resources valid ({', '.join(kinds)}); CRD schemas: {custom}")
            check_rules(documents, folder)
        print(run(PROMTOOL, "test", "rules", ROOT / "tests" / "chart" / "alerts_test.yaml").strip().splitlines()[-1])
    check_data_copies()
    print(f"dashboard: {check_dashboard()} queries; chart data copies match data/")


if __name__ == "__main__":
    sys.exit(main())
