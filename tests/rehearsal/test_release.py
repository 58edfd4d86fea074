"""The release as a cluster runs it, end to end through the project's images: Slack event to thread reply, the
job's run, artifacts and trace in the containerised MLflow, the eval CronJob, Prometheus scraping what the
ServiceMonitors select, and `helm test`."""

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml
from mlflow import MlflowClient

from tests.e2e.test_job_in_mlflow import _complete_trace, reaction_event
from tests.rehearsal.conftest import S3_KEYS, VALUES, Rehearsal, assert_no_refused_records
from tests.support.servers import ROOT, free_port, wait_until
from tests.support.stack import CHANNEL, IngestClient

pytestmark = pytest.mark.rehearsal

MLFLOW = "http://127.0.0.1:5000"
PUSHGATEWAY = "http://127.0.0.1:9091"
ARXIV = "https://arxiv.org/abs/2106.09685"
SERVICES = ("ingest", "dispatcher", "retrieval", "llm-gateway", "composer", "poster")
PROMETHEUS = ROOT / ".cache" / "tools" / "prometheus" / "usr" / "bin" / "prometheus"
DASHBOARD = ROOT / "charts" / "technoshare" / "files" / "dashboard.json"


@pytest.fixture(autouse=True)
def still_healthy(rehearsal: Rehearsal) -> Iterator[None]:
    """After each test every workload is still running and ready, and no MLflow record was refused."""
    yield
    rehearsal.release.check_healthy()
    assert_no_refused_records(rehearsal)


def post_link(rehearsal: Rehearsal, text: str) -> dict[str, Any]:
    event = IngestClient.message_event(text)
    assert rehearsal.ingest.slack_request(event).status_code == 200
    [job] = rehearsal.ingest.wait_jobs_done(event["event"]["ts"], 1, timeout=180)
    return job | {"message_ts": event["event"]["ts"]}


def test_every_container_runs_as_the_chart_says(rehearsal: Rehearsal) -> None:
    for service in SERVICES:
        attrs = rehearsal.release.container(f"technoshare-{service}").attrs
        assert attrs["Config"]["User"] == "10001:10001", service
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True, service
        assert attrs["HostConfig"]["CapDrop"] == ["ALL"], service
        assert "no-new-privileges" in attrs["HostConfig"]["SecurityOpt"], service
        image = rehearsal.images["images"]["ingest" if service == "dispatcher" else service]
        assert attrs["Config"]["Image"] == image, service
        revision = [e for e in attrs["Config"]["Env"] if e.startswith("TECHNOSHARE_GIT_REVISION=")]
        assert revision == [f"TECHNOSHARE_GIT_REVISION={rehearsal.images['revision']}"], service
    # Every Service name resolves inside a container to its Service's address, as cluster DNS would answer it.
    hosts = rehearsal.release.container("technoshare-composer").exec_run(["cat", "/etc/hosts"]).output.decode()
    addresses = rehearsal.release.router.addresses
    for name in ("technoshare-mlflow", "technoshare-mlflow.technoshare.svc.cluster.local", "technoshare-ingest"):
        address = addresses[name.split(".")[0]]
        assert address != "127.0.0.1" and re.search(rf"^{re.escape(address)}\s+{re.escape(name)}$", hosts, re.M), name
    # The root really is read-only: /var/tmp is writable by anyone on a writable root.
    denied = rehearsal.release.container("technoshare-composer").exec_run(["sh", "-c", "touch /var/tmp/x"])
    assert denied.exit_code != 0 and b"Read-only file system" in denied.output, denied.output
    # The database password reaches the pods as PGPASSWORD and is in no URL. (The local server trusts loopback, so
    # it cannot check the password itself; tests/integration/test_database_password.py shows libpq takes it.)
    password = yaml.safe_load(VALUES.read_text())["externalDatabase"]["password"]
    for service in ("ingest", "dispatcher", "poster", "llm-gateway", "mlflow"):
        env = dict(
            e.split("=", 1) for e in rehearsal.release.container(f"technoshare-{service}").attrs["Config"]["Env"]
        )
        assert env["PGPASSWORD"] == password, service
        assert not [k for k, v in env.items() if "://" in v and password in v], service


CALL_WITH_OWN_TOKEN = """
import os, httpx
url = os.environ[os.environ["TARGET"] + "_URL"] + os.environ["ROUTE"]
token = os.environ.get("TECHNOSHARE_INTERNAL_TOKEN")  # the pods facing Slack hold none
headers = {"authorization": "Bearer " + token} if token else {}
print(httpx.post(url, json={}, headers=headers, timeout=10).status_code)
"""


@pytest.mark.parametrize(
    "caller,target,route,refused",
    [
        ("retrieval", "POSTER", "/v1/replies", 401),  # a pod that parses hostile HTML cannot post to Slack
        ("retrieval", "INGEST", "/v1/jobs/x/checkpoints", 401),  # nor write a reply for composer to post
        ("retrieval", "COMPOSER", "/v1/jobs", 401),  # nor hand composer a job
        ("dispatcher", "COMPOSER", "/v1/compose", 403),  # a caller composer knows, on a route not meant for it
        ("ingest", "COMPOSER", "/v1/jobs", 401),  # the pods facing the internet hold no token at all
    ],
)
def test_a_pod_calling_a_service_it_has_no_business_with_is_refused(
    rehearsal: Rehearsal, caller: str, target: str, route: str, refused: int
) -> None:
    """Through the Service name, with the caller's own token, from inside its container."""
    container = rehearsal.release.container(f"technoshare-{caller}")
    result = container.exec_run(["python", "-c", CALL_WITH_OWN_TOKEN], environment={"TARGET": target, "ROUTE": route})
    assert result.exit_code == 0, result.output
    assert result.output.decode().strip() == str(refused)


MLFLOW_AS_OWN_USER = """
import json, os, httpx
base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow"
auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
calls = {
    "read": ("GET", "/experiments/get-by-name", {"params": {"experiment_name": "technoshare_commentator"}}),
    "new prompt version": ("POST", "/model-versions/create",
                           {"json": {"name": "stage_b_compose_reply", "source": "x"}}),
    "move prompt alias": ("POST", "/registered-models/alias",
                          {"json": {"name": "stage_b_compose_reply", "alias": "prod", "version": "1"}}),
    "create user": ("POST", "/users/create", {"json": {"username": "intruder", "password": "intruder-password-1"}}),
}
print(json.dumps({what: httpx.request(m, base + path, auth=auth, timeout=10, **kw).status_code
                  for what, (m, path, kw) in calls.items()}))
"""


@pytest.mark.parametrize("service", ["retrieval", "composer"])
def test_each_workload_signs_in_to_mlflow_as_itself_and_cannot_touch_the_prompts_or_users(
    rehearsal: Rehearsal, service: str
) -> None:
    """With mlflow.auth on, each workload has its own MLflow user (the mlflow-users hook Job): it writes its own
    records (every other rehearsal test checks none is refused), reads, and cannot change the prompts every reply is
    written with, nor manage users. The admin's password is in no service pod."""
    container = rehearsal.release.container(f"technoshare-{service}")
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["MLFLOW_TRACKING_USERNAME"] == service
    admin = rehearsal.manifests.secret_data("technoshare-mlflow-auth")["admin-password"]  # type: ignore[index]
    for name in SERVICES:
        values = rehearsal.release.container(f"technoshare-{name}").attrs["Config"]["Env"]
        assert not [e for e in values if admin in e], name
    result = container.exec_run(["python", "-c", MLFLOW_AS_OWN_USER])
    assert result.exit_code == 0, result.output
    statuses = json.loads(result.output.decode().strip().splitlines()[-1])
    assert statuses == {"read": 200, "new prompt version": 403, "move prompt alias": 403, "create user": 403}


def test_an_upgrade_runs_the_post_upgrade_hooks_again_over_what_the_install_made(rehearsal: Rehearsal) -> None:
    """`helm upgrade` runs the mlflow-users and prompt-sync Jobs again: the users, the experiments and the prompts
    prompt-sync registered exist by then (the first version of mlflow_users.py failed on an existing prompt)."""
    hooks = {job.name: job for job in rehearsal.manifests.hooks("post-upgrade")}
    users = rehearsal.release.run_to_completion(hooks["technoshare-mlflow-users"])
    assert "updated prompt-sync" in users and "created" not in users, users
    rehearsal.release.run_to_completion(hooks["technoshare-prompt-sync"])


def test_a_slack_event_is_answered_in_its_thread_and_lands_in_mlflow(rehearsal: Rehearsal) -> None:
    job = post_link(rehearsal, f"<{ARXIV}>")
    assert job["outcome"] == "success", job
    [reply] = rehearsal.slack.replies_in(CHANNEL, job["message_ts"])
    assert "TL;DR" in json.dumps(reply)

    client = MlflowClient(MLFLOW)
    seen: list[str] = []

    def job_run():  # type: ignore[no-untyped-def]
        experiment = client.get_experiment_by_name("technoshare_commentator")
        runs = (
            []
            if experiment is None
            else client.search_runs(
                [experiment.experiment_id], f"tags.job_id = '{job['id']}' and tags.outcome = 'success'"
            )
        )
        artifacts = [a.path for a in client.list_artifacts(runs[0].info.run_id)] if runs else []
        seen[:] = [f"experiment={experiment is not None} runs={len(runs)} artifacts={artifacts}"]
        return runs[0] if len(artifacts) == 7 else None

    try:
        run = wait_until(job_run, timeout=120, interval=1, what="the job's run with its 7 artifacts in MLflow")
    except AssertionError as timeout:
        raise AssertionError(f"{timeout}; last seen: {seen}") from None
    assert run.data.tags["outcome"] == "success"
    s3 = boto3.client(
        "s3",
        endpoint_url=rehearsal.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["access-key-id"],
        aws_secret_access_key=S3_KEYS["secret-access-key"],
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=rehearsal.bucket).get("Contents", [])]
    stored = {key.rsplit("/", 1)[-1] for key in keys if f"/{run.info.run_id}/artifacts/" in key}
    assert {"evidence.json", "slack_payload.json", "sources.txt", "slack_message.txt"} <= stored and len(stored) == 7, (
        keys
    )

    trace = wait_until(
        lambda: _complete_trace(client, run.data.tags["trace_id"]), timeout=120, interval=1, what="the whole trace"
    )
    services = {span.attributes.get("service") or span.name.split(" ")[0].split(".")[0] for span in trace.data.spans}
    assert {"ingest", "composer", "retrieval", "llm_gateway", "poster"} <= services, services
    model = client.get_logged_model(run.data.tags["app_version_id"])
    assert model.params["git_revision"] == rehearsal.images["revision"]


def test_the_eval_cronjob_pushes_its_pass_rate(rehearsal: Rehearsal) -> None:
    cron = rehearsal.manifests.cron_job("technoshare-eval")
    logs = rehearsal.release.run_to_completion(cron)
    assert "pass rate" in logs.lower(), logs[-2000:]
    metrics = httpx.get(f"{PUSHGATEWAY}/metrics", timeout=5).text
    [rate] = [line for line in metrics.splitlines() if line.startswith("technoshare_eval_pass_rate{")]
    assert float(rate.rsplit(" ", 1)[1]) >= 0.8, rate


def test_helm_test_passes(rehearsal: Rehearsal) -> None:
    tests = rehearsal.manifests.hooks("test")
    assert tests, "the chart has no helm test hook"
    for pod in tests:
        rehearsal.release.run_to_completion(pod)


def prometheus_config(rehearsal: Rehearsal) -> dict[str, Any]:
    """What prometheus-operator makes of the rendered ServiceMonitors: each selected Service's named port, scraped
    at its path with the endpoint's honorLabels, and the target labels the operator adds (job = the Service's
    name, namespace, service, endpoint, pod), which replace same-named metric labels unless honorLabels is set."""
    services = rehearsal.manifests.of_kind("Service")
    scrape_configs = []
    for monitor in rehearsal.manifests.of_kind("ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, monitor["metadata"]["name"]
        [service] = selected
        for endpoint in monitor["spec"]["endpoints"]:
            [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
            auth = {}
            if "basicAuth" in endpoint:  # the operator reads both from Secrets of the monitor's namespace
                refs = endpoint["basicAuth"]
                auth = {
                    "basic_auth": {
                        part: rehearsal.manifests.secret_data(refs[part]["name"])[refs[part]["key"]]  # type: ignore[index]
                        for part in ("username", "password")
                    }
                }
            scrape_configs.append(
                auth
                | {
                    "job_name": f"{monitor['metadata']['name']}/{endpoint['port']}",
                    "metrics_path": endpoint.get("path", "/metrics"),
                    "honor_labels": endpoint.get("honorLabels", False),
                    "scrape_interval": "1s",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{port['port']}"],
                            "labels": {
                                "job": service["metadata"]["name"],
                                "namespace": rehearsal.manifests.namespace,
                                "service": service["metadata"]["name"],
                                "endpoint": endpoint["port"],
                                "pod": f"{service['metadata']['name']}-0",
                            },
                        }
                    ],
                }
            )
    return {"global": {"evaluation_interval": "1s"}, "rule_files": ["rules.yaml"], "scrape_configs": scrape_configs}


@contextmanager
def prometheus(rehearsal: Rehearsal, directory: Path) -> Iterator[str]:
    directory.mkdir(parents=True, exist_ok=True)
    [rule] = rehearsal.manifests.of_kind("PrometheusRule")
    (directory / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    (directory / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(rehearsal)))
    address = f"127.0.0.1:{free_port()}"
    with (directory / "prometheus.log").open("wb") as log:
        child = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address={address}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://{address}"
    finally:
        child.terminate()
        child.wait(timeout=15)


def test_prometheus_scrapes_what_the_servicemonitors_select_and_every_dashboard_query_has_data(
    rehearsal: Rehearsal, tmp_path: Path
) -> None:
    with prometheus(rehearsal, tmp_path / "prometheus") as url:

        def targets_up() -> list[dict[str, Any]] | None:
            try:
                response = httpx.get(f"{url}/api/v1/targets", timeout=5)
            except httpx.HTTPError:
                return None
            if response.status_code != 200:  # 503 while Prometheus starts
                return None
            active = response.json()["data"]["activeTargets"]
            return active if active and all(t["health"] == "up" for t in active) else None

        active = wait_until(targets_up, timeout=60, interval=0.5, what="every ServiceMonitor target up")
        jobs = {t["labels"]["job"] for t in active}
        assert {f"technoshare-{s}" for s in SERVICES} | {"technoshare-mlflow", "technoshare-pushgateway"} <= jobs
        rules = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert rules and all(rule["health"] == "ok" for group in rules for rule in group["rules"]), rules

        good = post_link(rehearsal, f"<{ARXIV}>")
        assert good["outcome"] == "success", good
        assert rehearsal.ingest.slack_request(reaction_event(good["slack_message_ts"], "+1")).status_code == 200
        refused = post_link(rehearsal, f"<{ARXIV}> break-the-gates")  # answered by the extractive fallback
        assert refused["outcome"] == "success" and "fallback" in refused["timings"], refused
        queries = [
            (panel["title"], target["expr"])
            for panel in json.loads(DASHBOARD.read_text())["panels"]
            for target in panel["targets"]
        ]

        missing: list[str] = []

        def all_have_data() -> bool:
            nonlocal missing
            missing = [f"{title}: {expr}" for title, expr in queries if not _query(url, expr)]
            return not missing

        try:
            wait_until(all_have_data, timeout=120, interval=2, what="data for every dashboard query")
        except AssertionError:
            raise AssertionError("dashboard queries without data:\n" + "\n".join(missing)) from None


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    expr = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]
