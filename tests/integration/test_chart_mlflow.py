"""The chart's MLflow, run with the exact commands the chart renders (the migration hook Job, then the server
Deployment's script) against a real PostgreSQL and a real S3-compatible server (moto): the schema is created,
runs are logged, artifacts go through --serve-artifacts into the private bucket, and /metrics answers."""

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from mlflow import MlflowClient
from moto.server import ThreadedMotoServer

from tests.support.chart import render_chart
from tests.support.servers import ROOT, free_port, wait_until

S3_KEYS = {"AWS_ACCESS_KEY_ID": "technoshare", "AWS_SECRET_ACCESS_KEY": "technoshare-secret"}


def rendered_mlflow() -> tuple[dict, dict]:  # type: ignore[type-arg]
    docs = render_chart()
    [server] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-mlflow")]
    [upgrade] = [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith("-mlflow-db-upgrade")]
    assert upgrade["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    return server["spec"]["template"]["spec"]["containers"][0], upgrade["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture
def database(postgres_url: str) -> str:
    """A fresh PostgreSQL database, as MLflow's image reaches it (psycopg 3, SQLAlchemy 2.1's default driver)."""
    return postgres_url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def container_env(container: dict, local: dict[str, str], needs: set[str]) -> dict[str, str]:  # type: ignore[type-arg]
    """The container's environment, with what points into the cluster replaced by the local servers."""
    names = {entry["name"] for entry in container["env"]}
    assert needs <= names, f"the chart no longer sets {needs - names}"
    plain = {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}
    return os.environ | plain | local


def run_container(container: dict, env: dict[str, str], port: int | None = None) -> subprocess.Popen[bytes]:  # type: ignore[type-arg]
    script = container["args"][0] if container.get("args") else container["command"][2]
    if port is not None:
        assert "--host 0.0.0.0 --port 5000" in script
        script = script.replace("--host 0.0.0.0 --port 5000", f"--host 127.0.0.1 --port {port}")
    assert container["command"][:2] == ["/bin/sh", "-ec"]
    return subprocess.Popen(["/bin/sh", "-ec", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.mlflow
def test_the_charts_mlflow_runs_on_postgresql_and_s3(database: str, s3_endpoint: str, tmp_path: Path) -> None:
    server, upgrade = rendered_mlflow()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **_keys())
    s3.create_bucket(Bucket="mlflow")  # what the chart's bucket hook Job does with mc
    local = {
        "MLFLOW_DATABASE_URI": database,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        **S3_KEYS,
    }

    migration = run_container(upgrade, container_env(upgrade, local, {"MLFLOW_DATABASE_URI"}))
    output = migration.communicate(timeout=180)[0].decode()
    assert migration.returncode == 0, output

    port = free_port()
    process = run_container(server, container_env(server, local, set(local) - {"PATH", "HOME"}), port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url, process), timeout=120, interval=0.5, what="the chart's MLflow")
        client = MlflowClient(url)
        experiment = client.create_experiment(f"chart-{uuid.uuid4().hex[:6]}")
        run = client.create_run(experiment)
        (tmp_path / "evidence.json").write_text('{"ok": true}')
        client.log_artifact(run.info.run_id, str(tmp_path / "evidence.json"))
        client.log_metric(run.info.run_id, "cost_usd", 0.001)
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["evidence.json"]
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
        assert any(key.endswith(f"{run.info.run_id}/artifacts/evidence.json") for key in keys), keys
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert "mlflow_http_request" in metrics
        # The Host headers a cluster sends (its Service's names, the pod IPs Prometheus scrapes, a port-forward)
        # pass MLflow's DNS-rebinding check; any other is refused.
        experiments = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
        for host in (
            "t-technoshare-mlflow:5000",
            "t-technoshare-mlflow.default.svc.cluster.local:5000",
            "10.244.1.7:5000",
            "172.20.0.9:5000",
            "100.64.3.9:5000",
            "[fd00:10:244::7]:5000",
            "localhost:5000",
        ):
            assert httpx.get(experiments, headers={"host": host}, timeout=10).status_code == 200, host
        assert httpx.get(experiments, headers={"host": "mlflow.attacker.example"}, timeout=10).status_code == 403
    finally:
        process.terminate()
        process.wait(timeout=20)
    # An upgrade of an up-to-date schema (what the pre-upgrade hook does on every helm upgrade) is a no-op.
    again = run_container(upgrade, container_env(upgrade, local, {"MLFLOW_DATABASE_URI"}))
    assert again.wait(timeout=180) == 0


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    }


def _healthy(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"MLflow exited: {process.stdout.read().decode()[-3000:] if process.stdout else ''}")
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
