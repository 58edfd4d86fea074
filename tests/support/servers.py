"""Real HTTP servers for tests: ASGI apps under uvicorn in a thread, and services as processes."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from scripts.local_server import serve_in_thread  # noqa: F401  (one server helper for scripts and tests)
from scripts.stack import service_command

ROOT = Path(__file__).resolve().parents[2]

_issued_ports: set[int] = set()


def free_port() -> int:
    """A port no other caller in this test session has been given.

    The OS may hand a just-closed port out again; two services of one stack given the same
    port once left composer's URL answered by another service (CI saw 404s on /v1/compose).
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _issued_ports:
            _issued_ports.add(port)
            return port


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_answering(
    process: subprocess.Popen[bytes] | None,
    log_path: Path,
    name: str,
    url: str,
    *,
    timeout: float,
    interval: float = 0.1,
    request_timeout: float = 1.0,
) -> None:
    """Until GET `url` answers 200; if the server's process exits first, fail at once with the end of its log."""

    def answering() -> bool:
        assert process is not None
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: {log_path.read_text()[-3000:]}")
        try:
            return httpx.get(url, timeout=request_timeout).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answering, timeout=timeout, interval=interval, what=f"{name} {httpx.URL(url).path}")


class ServiceProcess:
    """One service under uvicorn in its own process, as `make up` runs it."""

    def __init__(self, module: str, port: int, env: dict[str, str], log_dir: Path, name: str | None = None) -> None:
        """`name` (the log file's) tells apart two processes of one module, e.g. ingest's acks and dispatcher."""
        self.module = module
        self.port = port
        self.env = env
        self.log_path = log_dir / f"{name or module}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            service_command(self.module, self.port), cwd=ROOT, env=os.environ | self.env, stdout=log, stderr=log
        )
        if wait:
            self.wait_healthy()

    def wait_answering(self, path: str, timeout: float, interval: float = 0.1, request_timeout: float = 1.0) -> None:
        """Until GET `path` answers 200; fails at once if the process exits first."""
        wait_answering(
            self.process,
            self.log_path,
            self.module,
            self.url + path,
            timeout=timeout,
            interval=interval,
            request_timeout=request_timeout,
        )

    def wait_healthy(self, timeout: float = 180.0) -> None:
        self.wait_answering("/healthz", timeout)
        # A healthy answer from another service on this port must fail here, not as 404s in a test.
        title = httpx.get(f"{self.url}/openapi.json", timeout=5).json()["info"]["title"]
        expected = f"technoshare-{self.module.replace('_', '-')}"
        assert title == expected, f"{self.module}: port {self.port} is answered by {title}"

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run, as when a pod is OOM-killed."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
