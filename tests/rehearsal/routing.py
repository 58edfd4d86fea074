"""kube-proxy for the rehearsal: each Service on a loopback address of its own, forwarding to ready pods only.

A Service's port forwards new connections to its target port on the pod while the pod's readiness probe passes,
checked every second; an unready or stopped pod leaves its Service, so a caller's new connection is closed at once,
as in a cluster with no ready endpoints (kube-proxy refuses it). Connections already open stay with their pod."""

import threading
from collections.abc import Callable

from tests.rehearsal.kube import Manifests, ServiceRoute
from tests.support.chaos import ServiceProxy

FIRST_ADDRESS = 11  # 127.0.0.11 upwards; 127.0.0.1 is the pods' own address


class ServiceRouter:
    def __init__(self, manifests: Manifests, check_every: float = 1.0) -> None:
        self.routes: list[ServiceRoute] = manifests.service_routes()
        services = sorted({route.service for route in self.routes})
        self.addresses = {service: f"127.0.0.{FIRST_ADDRESS + index}" for index, service in enumerate(services)}
        self.hosts = {
            name: self.addresses[service] for service in services for name in manifests.service_names(service)
        }
        self.check_every = check_every
        self._proxies: list[tuple[ServiceRoute, ServiceProxy]] = []
        self._stop = threading.Event()

    def start(self, ready: Callable[[str], bool]) -> None:
        """Listens on every Service port (before any pod starts, as a Service exists before its pods)."""
        self._proxies = [(route, ServiceProxy(self.addresses[route.service], route.port)) for route in self.routes]
        threading.Thread(target=self._follow, args=(ready,), name="service-router", daemon=True).start()

    def _follow(self, ready: Callable[[str], bool]) -> None:
        while not self._stop.is_set():
            backends = {route.backend for route, _ in self._proxies}
            state = {backend: ready(backend) for backend in backends}
            for route, proxy in self._proxies:
                if state[route.backend]:
                    proxy.route_to(route.target_port)
                else:
                    proxy.route_to()
            self._stop.wait(self.check_every)

    def url(self, service: str, port: int) -> str:
        return f"http://{self.addresses[service]}:{port}"

    def close(self) -> None:
        self._stop.set()
        for _, proxy in self._proxies:
            proxy.close()
