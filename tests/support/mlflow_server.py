"""A real MLflow tracking server for tests, started with scripts/start_mlflow.sh as `make up` does."""

import os
import signal
import subprocess
from pathlib import Path

from tests.support.servers import ROOT, free_port, wait_answering


class MlflowServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "MLFLOW_PORT": str(self.port),
            "MLFLOW_BACKEND_STORE": f"sqlite:///{self.workdir / 'mlflow.db'}",
            "MLFLOW_ARTIFACT_ROOT": str(self.workdir / "mlartifacts"),
        }
        log = (self.workdir / "mlflow.log").open("ab")
        self.process = subprocess.Popen(
            [str(ROOT / "scripts" / "start_mlflow.sh")],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_answering(
            self.process,
            self.workdir / "mlflow.log",
            "MLflow",
            f"{self.url}/health",
            timeout=timeout,
            interval=0.5,
            request_timeout=2,
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
