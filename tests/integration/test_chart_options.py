"""The chart's options for stopping, scaling, spooling and reaching PostgreSQL, rendered by the real helm and checked
against what the code they configure does."""

import os
import re
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY

import composer.pipeline  # noqa: F401  (registers composer's gauges)
from composer.settings import ComposerSettings
from ingest.settings import IngestSettings
from technoshare_common.spool import DiskSpool, Record
from tests.support.helm import CHART, deployments, pod_env, render
from tests.support.servers import ROOT, free_port, wait_until

SERVICES = ("ingest", "dispatcher", "retrieval", "llm-gateway", "composer", "poster")
SPOOL = "/var/spool/technoshare"
IN_FLIGHT = "technoshare_composer_jobs_in_flight"
DISPATCHER_IN_FLIGHT = "technoshare_jobs_in_flight"


def hpas(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc["spec"]
        for doc in documents
        if doc["kind"] == "HorizontalPodAutoscaler"
    }


def test_a_stopping_composer_has_longer_than_its_job_deadline() -> None:
    """A rollout, scale-down or drain must not kill a job mid-way: the reply would be lost until ingest retries."""
    specs = deployments(render())
    grace = {service: specs[service]["terminationGracePeriodSeconds"] for service in SERVICES}
    deadline = ComposerSettings.model_fields["job_deadline_seconds"].default
    assert deadline < grace.pop("composer") <= IngestSettings.model_fields["composer_timeout_seconds"].default
    assert set(grace.values()) == {60}
    custom = deployments(render("--set", "poster.terminationGracePeriodSeconds=90"))
    assert custom["poster"]["terminationGracePeriodSeconds"] == 90


def test_uvicorn_as_the_chart_runs_it_finishes_requests_in_flight_on_sigterm(tmp_path: Path) -> None:
    """The grace period only helps if the server drains: SIGTERM during a request still gets its response."""
    [container] = deployments(render())["composer"]["containers"]
    (tmp_path / "slow_app.py").write_text(
        "import asyncio, pathlib\n"
        "from fastapi import FastAPI\n"
        "def build_app():\n"
        "    app = FastAPI()\n"
        "    @app.get('/job')\n"
        "    async def job():\n"
        "        pathlib.Path('started').touch()\n"
        "        await asyncio.sleep(2)\n"
        "        return {'done': True}\n"
        "    return app\n"
    )
    command = [part.replace("composer.main:build_app", "slow_app:build_app") for part in container["command"]]
    port = free_port()
    command[command.index("--port") + 1], command[command.index("--host") + 1] = str(port), "127.0.0.1"
    env = os.environ | {"PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/docs"), timeout=30, what="uvicorn")
        with ThreadPoolExecutor(1) as pool:
            response = pool.submit(httpx.get, f"http://127.0.0.1:{port}/job", timeout=30)
            wait_until((tmp_path / "started").exists, timeout=10, what="the request to start")
            server.send_signal(signal.SIGTERM)
            assert response.result().json() == {"done": True}
        server.wait(timeout=15)  # uvicorn re-raises SIGTERM once it has shut down: it exits by that signal
    finally:
        server.kill()
        output = server.communicate()[0].decode()
    assert "Waiting for connections to close" in output, output
    assert output.index("Waiting for connections to close") < output.index("Application shutdown complete"), output


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_composer_scales_on_jobs_in_flight_and_cpu_still_works() -> None:
    default = hpas(render())
    [metric] = default["composer"]["metrics"]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": IN_FLIGHT},
            "target": {"type": "AverageValue", "averageValue": "2"},
        },
    }
    for service in ("retrieval", "llm-gateway"):
        assert default[service]["metrics"][0]["resource"]["name"] == "cpu"

    cpu = hpas(render("--set", "composer.autoscaling.metric=cpu", "--set", "composer.autoscaling.targetJobsInFlight=3"))
    assert cpu["composer"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    tuned = hpas(render("--set", "composer.autoscaling.targetJobsInFlight=1.5"))
    assert tuned["composer"]["metrics"][0]["pods"]["target"]["averageValue"] == "1.5"


def test_the_adapter_rules_serve_the_in_flight_gauges_per_pod_under_the_names_the_hpas_read() -> None:
    """composer scales on the jobs it composes, the dispatcher on the jobs it has handed off: per-pod gauges."""
    from ingest.dispatcher import JOBS_IN_FLIGHT  # registers the dispatcher's gauge

    assert REGISTRY.get_sample_value(IN_FLIGHT) is not None, "composer no longer has the gauge"
    assert JOBS_IN_FLIGHT._name == DISPATCHER_IN_FLIGHT, "the dispatcher's gauge was renamed"
    values = yaml.safe_load((ROOT / "k8s" / "prometheus-adapter-values.yaml").read_text())
    rules = {rule["name"]["as"]: rule for rule in values["rules"]["custom"]}
    rendered = hpas(render())
    for component, gauge in (("composer", IN_FLIGHT), ("dispatcher", DISPATCHER_IN_FLIGHT)):
        [metric] = rendered[component]["metrics"]
        assert metric["pods"]["metric"]["name"] == gauge, component
        rule = rules[gauge]
        assert rule["seriesQuery"].startswith(f"{gauge}{{")
        assert re.search(rule["name"]["matches"], gauge) and not re.search(rule["name"]["matches"], "x" + gauge)
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}


def test_the_spool_is_an_empty_dir_by_default() -> None:
    documents = render()
    assert not [doc for doc in documents if doc["kind"] == "PersistentVolumeClaim"]
    for service in SERVICES:
        spec = deployments(documents)[service]
        assert {"name": "spool", "emptyDir": {"sizeLimit": "1Gi"}} in spec["volumes"]
        env = pod_env(spec["containers"][0], documents, "p")
        assert env["MLFLOW_SPOOL_DIR"] == SPOOL
        assert int(env["SPOOL_MAX_BYTES"]) < 1024**3  # the spool drops its oldest records before the kubelet evicts


def test_the_spools_budget_follows_its_volume() -> None:
    documents = render("--set", "spool.sizeLimit=4Gi", "--set", "spool.maxBytes=3221225472")
    for service in SERVICES:
        spec = deployments(documents)[service]
        assert {"name": "spool", "emptyDir": {"sizeLimit": "4Gi"}} in spec["volumes"]
        env = pod_env(spec["containers"][0], documents, "p")
        assert (env["SPOOL_MAX_BYTES"], env["SPOOL_KEEP_REJECTED_HOURS"]) == ("3221225472", "72")
        settings = ComposerSettings(**{k: v for k, v in env.items() if k.startswith("SPOOL_")})
        assert settings.spool_max_bytes == 3 * 1024**3


def test_a_persistent_spool_is_a_pvc_per_service_and_a_directory_per_pod() -> None:
    documents = render("--set", "spool.persistence.enabled=true", "--set", "spool.persistence.storageClass=efs")
    claims = {doc["metadata"]["name"]: doc["spec"] for doc in documents if doc["kind"] == "PersistentVolumeClaim"}
    assert set(claims) == {f"t-technoshare-{service}-spool" for service in SERVICES}
    for service in SERVICES:
        assert claims[f"t-technoshare-{service}-spool"] == {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "efs",
            "resources": {"requests": {"storage": "1Gi"}},
        }
        spec = deployments(documents)[service]
        [volume] = [volume for volume in spec["volumes"] if volume["name"] == "spool"]
        assert volume == {"name": "spool", "persistentVolumeClaim": {"claimName": f"t-technoshare-{service}-spool"}}
        [container] = spec["containers"]
        assert {"name": "spool", "mountPath": SPOOL} in container["volumeMounts"]
        assert pod_env(container, documents, f"{service}-7d9f-x2k")["MLFLOW_SPOOL_DIR"] == f"{SPOOL}/{service}-7d9f-x2k"


def test_pods_sharing_the_spool_volume_send_each_record_once(tmp_path: Path) -> None:
    """Two composer pods on one spool PVC, each draining the directory the chart gives it. The spool does not claim
    records between processes: two drains of one directory would both send the same record."""
    documents = render("--set", "spool.persistence.enabled=true")
    [container] = deployments(documents)["composer"]["containers"]
    both_sending = threading.Barrier(2, timeout=5)
    sent: list[Record] = []

    def send(record: Record) -> None:
        both_sending.wait()  # each pod is in the middle of sending when the other one is
        sent.append(record)

    spools = []
    for pod in ("composer-a", "composer-b"):
        directory = Path(pod_env(container, documents, pod)["MLFLOW_SPOOL_DIR"].replace(SPOOL, str(tmp_path)))
        spool = DiskSpool(directory / "job-runs", "job_run", send)
        assert spool.put({"from": pod})
        spools.append(spool)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda spool: spool.drain_once(), spools))

    assert sorted(record["from"] for record in sent) == ["composer-a", "composer-b"]


@pytest.mark.parametrize("values", sorted((CHART / "ci").glob("*.yaml")), ids=lambda path: path.name)
def test_no_database_password_is_put_into_a_url(values: Path) -> None:
    """A password with @, /, : or # would break the URL; libpq takes it from PGPASSWORD instead."""
    documents = render("-f", str(values))
    containers = [
        container
        for doc in documents
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")
        for container in _pod_spec(doc)["containers"]
    ]
    with_database = 0
    for container in containers:
        env = {entry["name"]: entry for entry in container.get("env", [])}
        urls = [entry["value"] for entry in env.values() if "://" in entry.get("value", "")]
        assert not [url for url in urls if "$(" in url or re.match(r"\w[\w+]*://[^/@]*:[^/@]*@", url)], urls
        assert "DATABASE_PASSWORD" not in env
        if [url for url in urls if url.startswith("postgresql://")]:
            with_database += 1
            secret = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
            assert secret["key"] == "password" and secret["name"].endswith(("-postgresql", "technoshare-database"))
    assert with_database >= 5  # ingest, poster, llm-gateway, MLflow and its migration Job


def _pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec = document["spec"]
    if document["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def test_no_disruption_budget_blocks_a_drain_at_one_replica() -> None:
    def budgets(*args: str) -> set[str]:
        return {d["metadata"]["name"] for d in render(*args) if d["kind"] == "PodDisruptionBudget"}

    assert "t-technoshare-poster" in budgets("--set", "poster.replicas=2")
    assert "t-technoshare-poster" not in budgets("--set", "poster.replicas=1")
    assert "t-technoshare-composer" in budgets()  # scaled by its HPA from 2 pods
    assert "t-technoshare-composer" not in budgets("--set", "composer.autoscaling.minReplicas=1")
    assert "t-technoshare-poster" in budgets("--set", "poster.replicas=1", "--set", "poster.pdb.minAvailable=0")
    assert "t-technoshare-poster" in budgets("--set", "poster.replicas=1", "--set", "poster.pdb.minAvailable=50%")


@pytest.mark.parametrize(
    "values,replicas,budget",
    [
        ((), 1, False),  # the in-chart PostgreSQL is one pod anyway
        (("-f", str(CHART / "ci" / "external-values.yaml")), 2, True),  # a drain or a crash leaves MLflow up
        (("-f", str(CHART / "ci" / "external-values.yaml"), "--set", "mlflow.replicas=1"), 1, False),
    ],
    ids=["in-chart-database", "external-database", "external-database-one-replica"],
)
def test_mlflow_runs_two_replicas_with_a_budget_whenever_its_database_is_external(
    values: tuple[str, ...], replicas: int, budget: bool
) -> None:
    documents = render(*values)
    [mlflow] = [d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "t-technoshare-mlflow"]
    assert mlflow["spec"]["replicas"] == replicas
    budgets = [
        d for d in documents if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "t-technoshare-mlflow"
    ]
    assert bool(budgets) == budget
