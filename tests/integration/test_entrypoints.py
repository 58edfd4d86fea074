"""Each image's entrypoint, started as a process the way its Dockerfile starts it (no Docker engine here), and
the chart running the same command: the Dockerfiles, the chart and the code cannot drift apart unnoticed."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.chart import render_chart
from tests.support.servers import ROOT, free_port, wait_until

SERVICES = ("ingest", "retrieval", "llm-gateway", "composer", "poster")


def dockerfile(service: str) -> dict[str, object]:
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    runtime = text[text.rindex("FROM ") :]  # the final stage is the image
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", runtime, re.M):
        env |= dict(pair.split("=", 1) for pair in line.split())
    copies = re.findall(r"^COPY (data/\S+) (/app/\S+)$", runtime, re.M)
    [cmd] = re.findall(r"^CMD (\[.+\])$", runtime, re.M)
    [port] = re.findall(r"^EXPOSE (\d+)$", runtime, re.M)
    return {"cmd": json.loads(cmd), "env": env, "copies": copies, "port": int(port)}


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_entrypoint_serves(service: str, tmp_path: Path) -> None:
    image = dockerfile(service)
    app_root = tmp_path / "image"
    for source, target in image["copies"]:  # type: ignore[attr-defined]
        destination = app_root / target.removeprefix("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / source).is_dir() else shutil.copy)(ROOT / source, destination)
    env = {
        key: value.replace("/app/", f"{app_root}/app/").replace("/opt/tiktoken", str(ROOT / ".cache" / "tiktoken"))
        for key, value in image["env"].items()  # type: ignore[attr-defined]
        if not key.startswith("UV_") and key != "PATH"
    }
    env |= {
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "SLACK_SIGNING_SECRET": "entrypoint-test",
        "JOB_STORE_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "POSTER_DATABASE_URL": f"sqlite:///{tmp_path / 'poster.db'}",
        "LLM_SPEND_DATABASE_URL": f"sqlite:///{tmp_path / 'spend.db'}",
    }
    port = free_port()
    command = [str(part) for part in image["cmd"]]  # type: ignore[attr-defined]
    assert command[command.index("--port") + 1] == str(image["port"])
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    log = (tmp_path / "service.log").open("wb")
    child = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthz", child), timeout=60, what=f"{service}'s entrypoint")
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert "technoshare_http_requests_total" in metrics
    finally:
        child.terminate()
        child.wait(timeout=15)
    if service == "composer":  # the image's data folder is what composer read its prompts from
        assert (app_root / "app" / "data" / "prompts" / "stage_b_compose_reply.yaml").exists()


def test_the_chart_runs_each_image_as_its_dockerfile_does() -> None:
    deployments = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in render_chart()
        if doc["kind"] == "Deployment"
    }
    for service in SERVICES:
        image = dockerfile(service)
        [container] = deployments[service]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == image["cmd"], service
        assert container["ports"][0]["containerPort"] == image["port"], service
        assert container["image"].startswith(f"technoshare/{service}:"), service


def _answers(url: str, child: subprocess.Popen[bytes]) -> bool:
    assert child.poll() is None, f"the entrypoint exited with {child.returncode}"
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_charts_jobs_run_scripts_their_image_has() -> None:
    """The eval CronJob and the prompt-sync hook run scripts/… from the eval image (k8s/images/eval)."""
    copied = re.findall(
        r"^COPY (scripts/\S+(?: scripts/\S+)*) scripts/$", (ROOT / "k8s/images/eval/Dockerfile").read_text(), re.M
    )
    scripts = {path for line in copied for path in line.split()}
    documents = render_chart()
    [cronjob] = [d for d in documents if d["kind"] == "CronJob" and d["metadata"]["name"].endswith("-eval")]
    [sync] = [d for d in documents if d["kind"] == "Job" and d["metadata"]["name"].endswith("-prompt-sync")]
    containers = [
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0],
        sync["spec"]["template"]["spec"]["containers"][0],
    ]
    for container in containers:
        assert container["args"][0] == "python" and container["args"][1] in scripts, container["args"]
        assert (ROOT / container["args"][1]).exists()
    assert sync["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
