"""Each service image, built by `make images`, started as a container with its own CMD (read-only root, its own
user), and the chart running exactly the command that CMD runs: images, chart and code cannot drift apart."""

import re
import shlex

import docker
import httpx
import pytest

from tests.rehearsal.conftest import built_images
from tests.support.chart import render_chart
from tests.support.servers import free_port, wait_until

pytestmark = pytest.mark.docker  # the images of `make images`, in a Docker engine

SERVICES = ("ingest", "retrieval", "llm-gateway", "composer", "poster")


def image_command(tag: str) -> list[str]:
    """What the image's CMD (`/bin/sh -c "exec uvicorn … $TECHNOSHARE_SERVICE_PORT …"`) executes."""
    config = docker.from_env().images.get(tag).attrs["Config"]
    env = dict(entry.split("=", 1) for entry in config["Env"])
    shell, flag, script = config["Cmd"]
    assert (shell, flag) == ("/bin/sh", "-c")
    words = shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], script))
    assert words[0] == "exec"
    return words[1:]


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_serves_with_its_own_cmd(service: str) -> None:
    tag = built_images()["images"][service]
    port = free_port()
    container = docker.from_env().containers.run(
        tag,
        detach=True,
        network_mode="host",
        read_only=True,
        cap_drop=["ALL"],
        tmpfs={"/tmp": "mode=1777"},
        environment={
            "TECHNOSHARE_SERVICE_PORT": str(port),
            "SLACK_SIGNING_SECRET": "entrypoint-test",
            "JOB_STORE_DATABASE_URL": "sqlite:////tmp/jobs.db",
            "POSTER_DATABASE_URL": "sqlite:////tmp/poster.db",
            "LLM_SPEND_DATABASE_URL": "sqlite:////tmp/spend.db",
        },
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            container.reload()
            assert container.status == "running", container.logs().decode(errors="replace")[-3000:]
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=90, what=f"{service}'s image")
        assert httpx.get(f"{url}/openapi.json", timeout=5).json()["info"]["title"] == f"technoshare-{service}"
        assert "technoshare_http_requests_total" in httpx.get(f"{url}/metrics", timeout=5).text
        assert container.attrs["Config"]["User"] == "10001:10001"
        if service == "composer":  # the prompts composer falls back to are in the image
            found = container.exec_run(["test", "-f", "/app/data/prompts/stage_b_compose_reply.yaml"])
            assert found.exit_code == 0
    finally:
        container.remove(force=True)


def test_the_chart_runs_each_image_as_its_cmd_does() -> None:
    images = built_images()["images"]
    deployments = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in render_chart()
        if doc["kind"] == "Deployment"
    }
    for service in SERVICES:
        command = image_command(images[service])
        [container] = deployments[service]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == command, service
        assert container["ports"][0]["containerPort"] == int(command[command.index("--port") + 1]), service
        assert container["image"].startswith(f"technoshare/{service}:"), service


def test_the_charts_jobs_run_console_scripts_their_image_has() -> None:
    """The eval CronJob and the prompt-sync hook run the evaluation package's console scripts from the eval image."""
    documents = render_chart()
    [cronjob] = [d for d in documents if d["kind"] == "CronJob" and d["metadata"]["name"].endswith("-eval")]
    [sync] = [d for d in documents if d["kind"] == "Job" and d["metadata"]["name"].endswith("-prompt-sync")]
    programs = [
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0],
        sync["spec"]["template"]["spec"]["containers"][0]["args"][0],
    ]
    assert programs == ["technoshare-eval", "technoshare-sync-prompts"]
    tag = built_images()["images"]["eval"]
    for program in programs:
        output = docker.from_env().containers.run(tag, [program, "--help"], network_mode="none", remove=True)
        assert b"usage:" in output, output[-500:]
    assert sync["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_the_mlflow_image_has_what_the_charts_mlflow_options_need() -> None:
    """Basic auth (mlflow.auth.enabled: Flask-WTF), PostgreSQL (psycopg 3), S3 (boto3) and --expose-prometheus."""
    tag = built_images()["images"]["mlflow"]
    modules = "import mlflow.server.auth, psycopg, boto3, prometheus_flask_exporter"
    output = docker.from_env().containers.run(
        tag, ["python", "-c", f"{modules}; print('ok')"], network_mode="none", remove=True
    )
    assert output.decode().strip().endswith("ok")
