"""Rendered Kubernetes objects translated into what a Docker engine runs, as a cluster would run them.

Why a translator rather than `podman kube play`: Debian's podman (4.3) plays Pods and Deployments but not Jobs,
CronJobs or Helm hooks, and gives Services no names; the chart needs all four. This module covers exactly the
fields the chart renders and refuses any other (`Unsupported`), so a chart change it cannot honour fails the
rehearsal instead of being silently dropped. What it knowingly leaves to a real cluster: NetworkPolicies,
HPAs, PodDisruptionBudgets, Ingress/HTTPRoute, ServiceMonitors/PrometheusRules (the rehearsal hands the
latter two to a real Prometheus itself).

Networking: every container shares the host's network namespace, so one pod per workload (ports would collide),
and a container listens on its pod's address, 127.0.0.1 (an address `0.0.0.0` in its command becomes 127.0.0.1).
Each Service gets a loopback address of its own, where tests/rehearsal/routing.py forwards each Service port to its
target port on the pod while the pod's readiness probe passes, as kube-proxy does: an unready pod leaves its
Service. Every Service name (short, `.ns`, `.ns.svc`, `.ns.svc.<cluster domain>`) resolves to that address inside
the containers (`--add-host`), so clients send the Host headers they send in a cluster.
"""

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOOK = "helm.sh/hook"
HOOK_WEIGHT = "helm.sh/hook-weight"
CLUSTER_DOMAIN = "cluster.local"
RUN_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod", "Service", "Secret", "ConfigMap"}
LEFT_TO_CLUSTER = {
    "NetworkPolicy",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
    "HTTPRoute",
    "ServiceMonitor",
    "PrometheusRule",
    "PersistentVolumeClaim",
}

_POD_FIELDS = {
    "containers",
    "securityContext",
    "volumes",
    "restartPolicy",
    "automountServiceAccountToken",
    "terminationGracePeriodSeconds",
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "affinity",
}
_CONTAINER_FIELDS = {
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "resources",
    "securityContext",
    "volumeMounts",
    "workingDir",
}
_SECURITY_FIELDS = {
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "seccompProfile",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "capabilities",
    "privileged",
}
_POD_SECURITY_FIELDS = {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "seccompProfile", "supplementalGroups"}
_PROBE_FIELDS = {"httpGet", "tcpSocket", "periodSeconds", "timeoutSeconds", "failureThreshold"}
_MOUNT_FIELDS = {"name", "mountPath", "readOnly"}
_VOLUME_SOURCE_FIELDS = {
    "emptyDir": {"sizeLimit"},
    "configMap": {"name", "items"},
    "secret": {"secretName", "items"},
    "persistentVolumeClaim": {"claimName", "readOnly"},
}
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


class Unsupported(ValueError):
    """A rendered field this translator cannot run faithfully."""


@dataclass(frozen=True)
class Probe:
    kind: str  # startup | readiness | liveness
    path: str | None  # None: a TCP probe
    port: int
    period: float
    timeout: float
    failure_threshold: int


@dataclass
class ContainerRun:
    """One container as `docker run` takes it (the docker SDK's keyword arguments, plus the probes)."""

    pod: str
    name: str
    image: str
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    user: str | None
    group_add: list[str]
    read_only: bool
    cap_drop: list[str]
    cap_add: list[str]
    security_opt: list[str]
    tmpfs: dict[str, str]
    volumes: dict[str, dict[str, str]]
    mem_limit: int | None
    stop_timeout: int
    ports: dict[str, int]
    probes: list[Probe] = field(default_factory=list)
    working_dir: str | None = None


@dataclass(frozen=True)
class ServiceRoute:
    service: str
    port: int
    backend: str  # the workload the Service selects
    target_port: int


@dataclass
class Workload:
    kind: str
    name: str
    pod_spec: dict[str, Any]
    hook: set[str] = field(default_factory=set)
    weight: int = 0
    backoff_limit: int = 6


class Manifests:
    """The rendered objects of one release in one namespace."""

    def __init__(self, objects: list[dict[str, Any]], namespace: str) -> None:
        self.objects = [o for o in objects if o]
        self.namespace = namespace

    def check_kinds(self) -> None:
        unknown = {o["kind"] for o in self.objects} - RUN_KINDS - LEFT_TO_CLUSTER
        if unknown:
            raise Unsupported(f"kinds the rehearsal neither runs nor knowingly leaves to a cluster: {sorted(unknown)}")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)

    def secret_data(self, name: str) -> dict[str, str] | None:
        secret = self.named("Secret", name)
        if secret is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return data | {k: str(v) for k, v in (secret.get("stringData") or {}).items()}

    def config_map_data(self, name: str) -> dict[str, str] | None:
        config_map = self.named("ConfigMap", name)
        return None if config_map is None else {k: str(v) for k, v in (config_map.get("data") or {}).items()}

    def workloads(self) -> list[Workload]:
        """Deployments, StatefulSets, hook Jobs and test Pods; CronJobs run on demand (`cron_job`)."""
        found = []
        for obj in self.objects:
            annotations = obj["metadata"].get("annotations") or {}
            hook = {phase.strip() for phase in annotations.get(HOOK, "").split(",") if phase.strip()}
            weight = int(annotations.get(HOOK_WEIGHT, "0"))
            name, kind = obj["metadata"]["name"], obj["kind"]
            if kind in ("Deployment", "StatefulSet"):
                replicas = obj["spec"].get("replicas", 1)
                if replicas != 1:
                    raise Unsupported(f"{kind} {name}: {replicas} replicas; on one host network a workload runs 1")
                found.append(Workload(kind, name, obj["spec"]["template"]["spec"], hook, weight))
            elif kind == "Job":
                backoff = obj["spec"].get("backoffLimit", 6)
                found.append(Workload(kind, name, obj["spec"]["template"]["spec"], hook, weight, backoff))
            elif kind == "Pod":
                found.append(Workload(kind, name, obj["spec"], hook, weight, 0))
        return found

    def cron_job(self, name: str) -> Workload:
        cron = self.named("CronJob", name)
        if cron is None:
            raise KeyError(f"no CronJob {name}")
        job = cron["spec"]["jobTemplate"]["spec"]
        return Workload("Job", f"{name}-manual", job["template"]["spec"], set(), 0, job.get("backoffLimit", 6))

    def hooks(self, phase: str) -> list[Workload]:
        """Hook workloads of one phase in Helm's order: weight, then name."""
        return sorted((w for w in self.workloads() if phase in w.hook), key=lambda w: (w.weight, w.name))

    def service_names(self, service: str, cluster_domain: str = CLUSTER_DOMAIN) -> list[str]:
        """The names cluster DNS answers for a Service."""
        ns = self.namespace
        return [service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.{cluster_domain}"]

    def service_routes(self) -> list[ServiceRoute]:
        """Each Service port with the target port on the one workload the Service selects."""
        routes = []
        ports_by_workload = {
            w.name: {
                p.get("name", str(p["containerPort"])): p["containerPort"]
                for c in w.pod_spec["containers"]
                for p in c.get("ports", [])
            }
            for w in self.workloads()
        }
        for service in self.of_kind("Service"):
            selector = service["spec"].get("selector") or {}
            backends = [
                w
                for w in self.of_kind("Deployment") + self.of_kind("StatefulSet")
                if selector.items() <= (w["spec"]["template"]["metadata"].get("labels") or {}).items()
            ]
            if len(backends) != 1:
                raise Unsupported(f"Service {service['metadata']['name']} selects {len(backends)} workloads")
            backend = backends[0]["metadata"]["name"]
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                if isinstance(target, str) and target not in ports_by_workload[backend]:
                    raise Unsupported(f"Service {service['metadata']['name']}: no port named {target} on {backend}")
                number = ports_by_workload[backend][target] if isinstance(target, str) else int(target)
                routes.append(ServiceRoute(service["metadata"]["name"], int(port["port"]), backend, number))
        return routes


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, `$$` escapes, anything else is kept."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        return env[name] if name in env else match.group(0)

    return re.sub(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_]*)\))", replace, value)


def resolve_env(container: dict[str, Any], manifests: Manifests, pod_name: str) -> dict[str, str]:
    if "envFrom" in container:
        raise Unsupported(f"{container['name']}: envFrom")
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        name = entry["name"]
        if "value" in entry:
            env[name] = expand(str(entry["value"]), env)
            continue
        source = entry.get("valueFrom") or {}
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            is_secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if is_secret else "configMapKeyRef"]
            data = (manifests.secret_data if is_secret else manifests.config_map_data)(ref["name"])
            value = None if data is None else data.get(ref["key"])
            if value is None:
                if ref.get("optional"):
                    continue
                kind = "Secret" if is_secret else "ConfigMap"
                raise Unsupported(f"{container['name']}: {name} needs {kind} {ref['name']} key {ref['key']}")
            env[name] = value
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            fields = {"metadata.name": pod_name, "metadata.namespace": manifests.namespace, "status.podIP": "127.0.0.1"}
            if path not in fields:
                raise Unsupported(f"{container['name']}: fieldRef {path}")
            env[name] = fields[path]
        else:
            raise Unsupported(f"{container['name']}: env {name} from {sorted(source)}")
    return env


def memory_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)([KMGT]i|[kMG])?", str(quantity))
    if not match:
        raise Unsupported(f"memory quantity {quantity!r}")
    return int(match.group(1)) * _UNITS.get(match.group(2) or "", 1)


def _security(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    pod_level = pod.get("securityContext") or {}
    if set(pod_level) - _POD_SECURITY_FIELDS:  # the API server refuses container-only fields at pod level
        raise Unsupported(f"{container['name']}: pod securityContext {sorted(set(pod_level) - _POD_SECURITY_FIELDS)}")
    merged = pod_level | (container.get("securityContext") or {})
    unknown = set(merged) - _SECURITY_FIELDS - {"supplementalGroups"}
    if unknown:
        raise Unsupported(f"{container['name']}: securityContext {sorted(unknown)}")
    if merged.get("privileged"):
        raise Unsupported(f"{container['name']}: privileged")
    profile = (merged.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if profile != "RuntimeDefault":  # Docker's default profile is the runtime default
        raise Unsupported(f"{container['name']}: seccompProfile {profile}")
    if merged.get("runAsNonRoot") and not merged.get("runAsUser"):
        raise Unsupported(f"{container['name']}: runAsNonRoot without runAsUser (the image user is unknown here)")
    return merged


def _probes(container: dict[str, Any], ports: dict[str, int]) -> list[Probe]:
    probes = []
    for kind in ("startup", "readiness", "liveness"):
        spec = container.get(f"{kind}Probe")
        if not spec:
            continue
        if set(spec) - _PROBE_FIELDS or set(spec.get("httpGet") or {}) - {"path", "port"}:
            raise Unsupported(f"{container['name']}: {kind}Probe {sorted(spec)} {sorted(spec.get('httpGet') or {})}")
        if "httpGet" in spec:
            action, path = spec["httpGet"], spec["httpGet"].get("path", "/")
        elif "tcpSocket" in spec:
            action, path = spec["tcpSocket"], None
        else:
            raise Unsupported(f"{container['name']}: {kind}Probe {sorted(spec)}")
        port = action["port"]
        probes.append(
            Probe(
                kind,
                path,
                ports[port] if isinstance(port, str) else int(port),
                float(spec.get("periodSeconds", 10)),
                float(spec.get("timeoutSeconds", 1)),
                int(spec.get("failureThreshold", 3)),
            )
        )
    return probes


def _write_files(target: Path, data: dict[str, str], items: list[dict[str, str]] | None, what: str) -> None:
    selected = items or [{"key": key, "path": key} for key in data]
    for item in selected:
        if item["key"] not in data:
            raise Unsupported(f"{what} has no key {item['key']}")
        path = target / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[item["key"]])
        path.chmod(0o644)
    for folder in [target, *target.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)


def _command(parts: list[Any] | None, env: dict[str, str]) -> list[str] | None:
    """Variables expanded as the kubelet does, and a container listening on its pod's address: here 127.0.0.1,
    leaving the Services' addresses to their proxies."""
    if parts is None:
        return None
    return [expand(str(part), env).replace("0.0.0.0", "127.0.0.1") for part in parts]


def container_runs(workload: Workload, manifests: Manifests, files: Path) -> list[ContainerRun]:
    """The pod's containers as Docker runs them; `files` holds the pod's ConfigMap, Secret and PVC folders."""
    pod = workload.pod_spec
    unknown = set(pod) - _POD_FIELDS
    if unknown:
        raise Unsupported(f"{workload.name}: pod fields {sorted(unknown)}")
    volumes: dict[str, dict[str, Any]] = {v["name"]: v for v in pod.get("volumes") or []}
    runs = []
    for container in pod["containers"]:
        unknown = set(container) - _CONTAINER_FIELDS
        if unknown:
            raise Unsupported(f"{workload.name}/{container['name']}: fields {sorted(unknown)}")
        ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for p in container.get("ports") or []}
        env = resolve_env(container, manifests, workload.name)
        security = _security(pod, container)
        tmpfs: dict[str, str] = {}
        binds: dict[str, dict[str, str]] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise Unsupported(f"{workload.name}: volumeMount {mount['name']} has no volume")
            if set(mount) - _MOUNT_FIELDS:
                raise Unsupported(f"{workload.name}: volumeMount fields {sorted(set(mount) - _MOUNT_FIELDS)}")
            [(kind, source)] = [(k, v) for k, v in volume.items() if k != "name"] or [("none", {})]
            if kind not in _VOLUME_SOURCE_FIELDS or set(source or {}) - _VOLUME_SOURCE_FIELDS[kind]:
                raise Unsupported(f"{workload.name}: volume {mount['name']} {kind} {sorted(source or {})}")
            if "emptyDir" in volume:
                options = ["mode=1777"]
                if limit := (volume["emptyDir"] or {}).get("sizeLimit"):
                    options.append(f"size={memory_bytes(limit)}")
                tmpfs[mount["mountPath"]] = ",".join(options)
                continue
            folder = files / workload.name / mount["name"]
            if "configMap" in volume or "secret" in volume:
                is_secret = "secret" in volume
                source = volume["secret" if is_secret else "configMap"]
                name = source["secretName" if is_secret else "name"]
                data = (manifests.secret_data if is_secret else manifests.config_map_data)(name)
                if data is None:
                    raise Unsupported(f"{workload.name}: volume {mount['name']} needs {name}")
                _write_files(folder, data, source.get("items"), name)
                binds[str(folder)] = {"bind": mount["mountPath"], "mode": "ro"}
            elif "persistentVolumeClaim" in volume:
                folder = files / "pvc" / volume["persistentVolumeClaim"]["claimName"]
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o2775)
                if "fsGroup" in security:  # what the kubelet does to a volume for fsGroup
                    os.chown(folder, -1, int(security["fsGroup"]))
                binds[str(folder)] = {"bind": mount["mountPath"], "mode": "ro" if mount.get("readOnly") else "rw"}
            else:
                raise Unsupported(f"{workload.name}: volume {mount['name']} of kind {sorted(volume)}")
        uid, gid = security.get("runAsUser"), security.get("runAsGroup")
        groups = [str(security["fsGroup"])] if "fsGroup" in security else []
        groups += [str(g) for g in security.get("supplementalGroups") or []]
        capabilities = security.get("capabilities") or {}
        limits = (container.get("resources") or {}).get("limits") or {}
        runs.append(
            ContainerRun(
                pod=workload.name,
                name=container["name"],
                image=container["image"],
                entrypoint=_command(container.get("command"), env),
                command=_command(container.get("args"), env),
                environment=env,
                user=None if uid is None else f"{uid}:{gid}" if gid is not None else str(uid),
                group_add=groups,
                read_only=bool(security.get("readOnlyRootFilesystem")),
                cap_drop=list(capabilities.get("drop") or []),
                cap_add=list(capabilities.get("add") or []),
                security_opt=["no-new-privileges"] if security.get("allowPrivilegeEscalation") is False else [],
                tmpfs=tmpfs,
                volumes=binds,
                mem_limit=memory_bytes(limits["memory"]) if "memory" in limits else None,
                stop_timeout=int(pod.get("terminationGracePeriodSeconds", 30)),
                ports=ports,
                probes=_probes(container, ports),
                working_dir=container.get("workingDir"),
            )
        )
    return runs
