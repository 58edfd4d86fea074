"""A rendered release run on a real Docker engine, in Helm's order, failing loudly with the containers' logs."""

import contextlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import requests
from docker.models.containers import Container

from tests.rehearsal.kube import ContainerRun, Manifests, Probe, Workload, container_runs
from tests.rehearsal.routing import ServiceRouter

LABEL = "technoshare.rehearsal"


class RehearsalFailed(AssertionError):
    pass


@dataclass
class Running:
    workload: Workload
    run: ContainerRun
    container: Container


class Release:
    """Installs like `helm install --wait`: pre-install hooks, the workloads until ready, post-install hooks."""

    def __init__(self, manifests: Manifests, workdir: Path, ready_timeout: float = 240.0) -> None:
        self.manifests = manifests
        self.workdir = workdir
        self.ready_timeout = ready_timeout
        self.client = docker.from_env()
        self.running: dict[str, Running] = {}
        self.router = ServiceRouter(manifests)
        self.hosts = self.router.hosts
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # -- install and uninstall

    def install(self) -> None:
        self.remove_leftovers()
        self.manifests.check_kinds()
        workloads = [w for w in self.manifests.workloads() if not w.hook and w.kind in ("Deployment", "StatefulSet")]
        self._check_ports_free(workloads)
        self.router.start(self.is_ready)
        for hook in self.manifests.hooks("pre-install"):
            self.run_to_completion(hook)
        for workload in workloads:
            self.start(workload)
        for name in list(self.running):
            self.wait_ready(name)
        for hook in self.manifests.hooks("post-install"):
            self.run_to_completion(hook)

    def uninstall(self) -> None:
        """Stops each workload with its terminationGracePeriodSeconds (SIGTERM, then SIGKILL), as a cluster does."""
        for name, running in self.running.items():
            with contextlib.suppress(docker.errors.NotFound):
                running.container.stop(timeout=running.run.stop_timeout)
                self._save_logs(running.container, name)
        self.remove_leftovers()
        self.running.clear()
        self.router.close()

    def remove_leftovers(self) -> None:
        """Containers of this namespace left by an earlier run that was killed (their names and ports clash)."""
        selector = f"{LABEL}={self.manifests.namespace}"
        for container in self.client.containers.list(all=True, filters={"label": selector}):
            container.remove(force=True)

    # -- workloads

    def start(self, workload: Workload) -> None:
        [run] = container_runs(workload, self.manifests, self.workdir / "files")
        self.running[workload.name] = Running(workload, run, self._create(run, workload.name))

    def wait_ready(self, name: str) -> None:
        """The startup probe, then the readiness probe, as the kubelet runs them (a failure shows the logs)."""
        running = self.running[name]
        deadline = time.monotonic() + self.ready_timeout
        for kind in ("startup", "readiness"):
            for probe in [p for p in running.run.probes if p.kind == kind]:
                while not self._probe(probe):
                    running.container.reload()
                    if running.container.status != "running":
                        raise self.failure(name, f"exited with {running.container.attrs['State']['ExitCode']}")
                    if time.monotonic() > deadline:
                        raise self.failure(name, f"{kind} probe {probe.path or probe.port} not passing")
                    time.sleep(min(probe.period, 1.0))

    def is_ready(self, name: str) -> bool:
        """Running and passing its readiness probe: what puts a pod behind its Service."""
        running = self.running.get(name)
        if running is None:
            return False
        probes = [p for p in running.run.probes if p.kind == "readiness"]
        if not probes:
            with contextlib.suppress(docker.errors.NotFound):
                running.container.reload()
                return bool(running.container.status == "running")
            return False
        return all(self._probe(probe) for probe in probes)

    def check_healthy(self) -> None:
        """Every workload still running, live and ready (what a cluster would report)."""
        for name, running in self.running.items():
            running.container.reload()
            if running.container.status != "running":
                raise self.failure(name, f"is {running.container.status}")
            for probe in running.run.probes:
                if probe.kind != "startup" and not self._probe_passes_within_threshold(probe):
                    raise self.failure(name, f"{probe.kind} probe {probe.path} fails {probe.failure_threshold} times")

    def _probe_passes_within_threshold(self, probe: Probe) -> bool:
        """As the kubelet judges it: a probe fails a pod only after `failureThreshold` failures in a row."""
        for attempt in range(max(probe.failure_threshold, 1)):
            if attempt:
                time.sleep(probe.period)
            if self._probe(probe):
                return True
        return False

    def run_to_completion(self, workload: Workload) -> str:
        """A Job (or a test Pod): retried up to its backoffLimit, as the Job controller does; returns its logs."""
        [run] = container_runs(workload, self.manifests, self.workdir / "files")
        attempts = []
        for attempt in range(workload.backoff_limit + 1):
            container = self._create(run, f"{workload.name}-{attempt}")
            try:
                result = container.wait(timeout=self.ready_timeout * 2)
            except requests.exceptions.ConnectionError:  # docker-py's wait timeout
                logs = container.logs(tail=80).decode(errors="replace")
                container.remove(force=True)
                raise RehearsalFailed(
                    f"{workload.kind} {workload.name} still running after "
                    f"{self.ready_timeout * 2:.0f}s; its last log lines:\n{logs}"
                ) from None
            logs = container.logs().decode(errors="replace")
            self._save_logs(container, f"{workload.name}-{attempt}")
            container.remove(force=True)
            if result["StatusCode"] == 0:
                return logs
            attempts.append(f"attempt {attempt + 1}: exit {result['StatusCode']}\n{logs[-2000:]}")
        shown = "\n".join(attempts[-2:])
        raise RehearsalFailed(f"{workload.kind} {workload.name} failed {len(attempts)} time(s); the last:\n{shown}")

    def container(self, name: str) -> Container:
        return self.running[name].container

    def failure(self, name: str, what: str) -> RehearsalFailed:
        logs = self.running[name].container.logs(tail=80).decode(errors="replace")
        return RehearsalFailed(f"{name} {what}; its last log lines:\n{logs}")

    # -- helpers

    def _create(self, run: ContainerRun, name: str) -> Container:
        options: dict[str, Any] = {
            "name": f"rehearsal-{self.manifests.namespace}-{name}",
            "labels": {LABEL: self.manifests.namespace},
            "detach": True,
            "network_mode": "host",
            "extra_hosts": self.hosts,
            "environment": run.environment,
            "read_only": run.read_only,
            "cap_drop": run.cap_drop or None,
            "cap_add": run.cap_add or None,
            "security_opt": run.security_opt or None,
            "tmpfs": run.tmpfs,
            "volumes": run.volumes,
            "group_add": run.group_add or None,
            "stop_signal": "SIGTERM",
        }
        if run.user:
            options["user"] = run.user
        if run.mem_limit:
            options["mem_limit"] = run.mem_limit
        if run.entrypoint is not None:
            options["entrypoint"] = run.entrypoint
            options["command"] = run.command or []
        elif run.command is not None:
            options["command"] = run.command
        if run.working_dir:
            options["working_dir"] = run.working_dir
        return self.client.containers.run(run.image, **options)

    def _probe(self, probe: Probe) -> bool:
        if probe.path is None:
            with socket.socket() as sock:
                sock.settimeout(probe.timeout)
                return sock.connect_ex(("127.0.0.1", probe.port)) == 0
        try:
            url = f"http://127.0.0.1:{probe.port}{probe.path}"
            return 200 <= httpx.get(url, timeout=max(probe.timeout, 2.0)).status_code < 400
        except httpx.HTTPError:
            return False

    def _check_ports_free(self, workloads: list[Workload]) -> None:
        for workload in workloads:
            for container in workload.pod_spec["containers"]:
                for port in container.get("ports") or []:
                    with socket.socket() as sock:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        try:
                            sock.bind(("127.0.0.1", port["containerPort"]))
                        except OSError:
                            raise RehearsalFailed(
                                f"port {port['containerPort']} ({workload.name}) is taken on 127.0.0.1: the rehearsal "
                                "runs the chart's fixed ports on the host network; stop what holds it (`make down`)"
                            ) from None

    def _save_logs(self, container: Container, name: str) -> None:
        with contextlib.suppress(docker.errors.APIError):
            (self.log_dir / f"{name}.log").write_bytes(container.logs())
