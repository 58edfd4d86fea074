"""The chart rendered with tests/rehearsal/values.yaml and run as containers of the project's images (`make images`),
against the local PostgreSQL, a real S3-compatible server, a local Slack Web API, a scripted OpenAI-protocol
upstream and the bundled sample site, all on loopback."""

import json
import logging
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import docker
import httpx
import pytest
import yaml
from moto.server import ThreadedMotoServer
from sqlalchemy import create_engine, text

from scripts import sample_site
from scripts.images.build import git_revision
from tests.rehearsal.kube import Manifests
from tests.rehearsal.release import Release
from tests.support.chart import HELM
from tests.support.fake_slack import VALID_TOKEN, FakeSlack
from tests.support.scripted_llm import ScriptedLLM, recorded_good_replies
from tests.support.servers import ROOT, free_port, serve_in_thread
from tests.support.stack import IngestClient

pytestmark = pytest.mark.rehearsal
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every S3 request

NAMESPACE = "technoshare"
RELEASE = "technoshare"
IMAGES = ROOT / ".cache" / "images.json"
VALUES = Path(__file__).parent / "values.yaml"
PUSHGATEWAY_IMAGE = "technoshare-rehearsal/pushgateway:debian-own-address"
S3_KEYS = {"access-key-id": "rehearsal", "secret-access-key": "rehearsal-secret"}


@dataclass
class Rehearsal:
    release: Release
    manifests: Manifests
    slack: FakeSlack
    llm: ScriptedLLM
    fallback_llm: ScriptedLLM  # the gateway's second upstream, for the models in LLM_FALLBACK_MODELS
    s3_endpoint: str
    bucket: str
    images: dict[str, Any]
    workdir: Path
    ingest: IngestClient


SERVICE_PORTS = {
    "ingest": 3000,
    "dispatcher": 3001,
    "retrieval": 8001,
    "llm-gateway": 8002,
    "composer": 8003,
    "poster": 8004,
}


def assert_no_refused_records(rehearsal: "Rehearsal") -> None:
    """No service had a run, trace or span refused by MLflow (a 4xx the spool sets aside)."""
    for service, port in SERVICE_PORTS.items():
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        refused = [
            line
            for line in metrics.splitlines()
            if line.startswith("technoshare_mlflow_spool_rejected_total{") and float(line.rsplit(" ", 1)[1]) > 0
        ]
        logs = rehearsal.release.container(f"technoshare-{service}").logs(tail=40).decode(errors="replace")
        assert not refused, f"{service}: MLflow refused records {refused}; its last log lines:\n{logs}"


def built_images() -> dict[str, Any]:
    """The images `make images` built for this very tree (a stale image would rehearse other code)."""
    assert IMAGES.exists(), "no images: run `make images` (make test and make rehearse do)"
    manifest = json.loads(IMAGES.read_text())
    current = git_revision()
    assert manifest["revision"] == current, (
        f"the images are of {manifest['revision']}, the tree is {current}: run `make images`"
    )
    client = docker.from_env()
    for tag in manifest["images"].values():
        client.images.get(tag)  # raises ImageNotFound with the tag
    return manifest


def pushgateway_image(base: str) -> None:
    client = docker.from_env()
    try:
        client.images.get(PUSHGATEWAY_IMAGE)
    except docker.errors.ImageNotFound:
        subprocess.run(
            ["docker", "build", "--network=host", f"--build-arg=PYTHON_IMAGE={base}", "-t", PUSHGATEWAY_IMAGE, "."],
            cwd=Path(__file__).parent / "pushgateway",
            check=True,
            capture_output=True,
        )


@pytest.fixture(scope="session")
def rehearsal_database() -> Iterator[None]:
    """The chart's role and its two databases, fresh, on the local server (external PostgreSQL)."""
    values = yaml.safe_load(VALUES.read_text())["externalDatabase"]
    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    databases = (values["mlflowDatabase"], values["jobsDatabase"])
    with admin.connect() as conn:
        for name in databases:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        role = values["username"]
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f"ALTER ROLE \"{role}\" PASSWORD '{values['password']}'"))
        for name in databases:
            conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{role}"'))
    yield
    with admin.connect() as conn:
        for name in databases:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def render(values_files: list[Path]) -> list[dict[str, Any]]:
    assert HELM.exists(), "helm is missing: run `make chart-check` (make test does)"
    args = [str(HELM), "template", RELEASE, str(ROOT / "charts" / "technoshare"), "-n", NAMESPACE]
    for path in values_files:
        args += ["-f", str(path)]
    rendered = subprocess.run(args, capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory: pytest.TempPathFactory, rehearsal_database: None) -> Iterator[Rehearsal]:
    images = built_images()
    pushgateway_image(images["base"])
    workdir = tmp_path_factory.mktemp("rehearsal")
    # The eval CronJob composes the dataset's first two examples (values.yaml): LoRA gets the scripted reply, and
    # QLoRA its recorded good one, which the content gates accept on QLoRA's evidence.
    slack, llm = FakeSlack(), ScriptedLLM(replies=recorded_good_replies(["arxiv-2305-14314"]))
    fallback_llm = ScriptedLLM()
    with ExitStack() as stack:
        slack_url = stack.enter_context(serve_in_thread(slack.app))
        llm_url = stack.enter_context(serve_in_thread(llm.app))
        fallback_url = stack.enter_context(serve_in_thread(fallback_llm.app))
        samples_url = stack.enter_context(serve_in_thread(sample_site.app))
        s3_port = free_port()
        s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port)
        s3.start()
        stack.callback(s3.stop)
        s3_endpoint = f"http://127.0.0.1:{s3_port}"
        bucket = yaml.safe_load(VALUES.read_text())["externalS3"]["bucket"]
        boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["access-key-id"],
            aws_secret_access_key=S3_KEYS["secret-access-key"],
        ).create_bucket(Bucket=bucket)
        signing_secret, internal_token = secrets.token_hex(16), secrets.token_hex(16)
        mlflow_admin = secrets.token_hex(16)
        # The tests read MLflow as its admin (the operator); the workloads each as their own user (values.yaml).
        stack.enter_context(_environment(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=mlflow_admin))
        tags = {name: tag.rpartition(":") for name, tag in images["images"].items()}
        run_values = {
            "secrets": {
                "slack": {"signingSecret": signing_secret, "botToken": VALID_TOKEN},
                "openai": {"apiKey": "sk-rehearsal-upstream"},
                "internalToken": {"token": internal_token},
            },
            "mlflow": {"auth": {"adminPassword": mlflow_admin}},
            "externalS3": {"endpoint": s3_endpoint},
            "llmGateway": {
                "upstreamBaseUrl": f"{llm_url}/v1",
                # A second provider: while the first fails, the gateway answers from it (test_release_outages.py).
                "env": [
                    {
                        "name": "LLM_UPSTREAMS",
                        "value": json.dumps(
                            {
                                "primary": {"base_url": f"{llm_url}/v1", "api_key_env": "OPENAI_API_KEY"},
                                "fallback": {"base_url": f"{fallback_url}/v1", "api_key_env": "OPENAI_API_KEY"},
                            }
                        ),
                    },
                    {"name": "LLM_MODEL_ROUTES", "value": json.dumps({"*": "primary", "fallback-": "fallback"})},
                    {"name": "LLM_FALLBACK_MODELS", "value": json.dumps({"gpt-4o-mini": ["fallback-gpt-4o-mini"]})},
                ],
            },
            # Retries come back within 10 s once an outage ends (the default doubles up to 120 s).
            "dispatcher": {"env": [{"name": "JOB_RETRY_MAX_SECONDS", "value": "10"}]},
            "retrieval": {
                "env": [
                    {"name": "ARXIV_API_URL", "value": f"{samples_url}/arxiv/api/query"},
                    {"name": "ARXIV_HTML_URL", "value": f"{samples_url}/arxiv/html"},
                    {"name": "GITHUB_API_URL", "value": f"{samples_url}/github"},
                    {"name": "RETRIEVAL_ALLOWED_HOSTS", "value": "127.0.0.1"},
                ]
            },
            "poster": {"env": [{"name": "SLACK_API_URL", "value": f"{slack_url}/api/"}]},
        }
        for key, name in (
            ("ingest", "ingest"),
            ("retrieval", "retrieval"),
            ("llmGateway", "llm-gateway"),
            ("composer", "composer"),
            ("poster", "poster"),
            ("mlflow", "mlflow"),
            ("evalCronJob", "eval"),
        ):
            repository, _, tag = tags[name]
            run_values.setdefault(key, {})["image"] = {"repository": repository, "tag": tag}
        run_file = workdir / "run-values.yaml"
        run_file.write_text(yaml.safe_dump(run_values))
        # The Secret a user creates for externalS3.existingSecret (kubectl create secret …).
        s3_secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "technoshare-rehearsal-s3", "namespace": NAMESPACE},
            "stringData": S3_KEYS,
        }
        manifests = Manifests([*render([VALUES, run_file]), s3_secret], NAMESPACE)
        release = Release(manifests, workdir)
        stack.callback(release.uninstall)
        release.install()
        ingest = IngestClient(
            f"http://127.0.0.1:{SERVICE_PORTS['ingest']}",
            signing_secret,
            internal_token,
            jobs_url=f"http://127.0.0.1:{SERVICE_PORTS['dispatcher']}",
        )
        rehearsal = Rehearsal(
            release, manifests, slack, llm, fallback_llm, s3_endpoint, bucket, images, workdir, ingest
        )
        yield rehearsal
        assert_no_refused_records(rehearsal)  # what the last test sent may have been refused after it ended
