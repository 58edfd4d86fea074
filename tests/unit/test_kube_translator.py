"""The rehearsal's translator from rendered objects to containers: what it runs, and what it refuses."""

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.rehearsal.kube import Manifests, Unsupported, Workload, container_runs, expand, resolve_env


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def deployment(
    name: str, pod: dict[str, Any], replicas: int = 1, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def job(name: str, hook: str, weight: int) -> dict[str, Any]:
    annotations = {"helm.sh/hook": hook, "helm.sh/hook-weight": str(weight)}
    pod = {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "OnFailure"}
    return {"kind": "Job", "metadata": {"name": name, "annotations": annotations}, "spec": {"template": {"spec": pod}}}


def test_expansion_follows_kubernetes() -> None:
    env = {"PASSWORD": "p@ss/word"}
    assert expand("postgresql://u:$(PASSWORD)@h/db", env) == "postgresql://u:p@ss/word@h/db"
    assert expand("$$(PASSWORD) $(UNSET) $HOME", env) == "$(PASSWORD) $(UNSET) $HOME"


def test_env_resolves_secrets_in_order_and_skips_optional_missing_keys() -> None:
    manifests = Manifests([secret("db", password="s3cret")], "ns")
    container = {
        "name": "c",
        "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "URL", "value": "postgresql://u:$(PASSWORD)@h/db"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token", "optional": True}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    }
    assert resolve_env(container, manifests, "pod-1") == {
        "PASSWORD": "s3cret",
        "URL": "postgresql://u:s3cret@h/db",
        "POD": "pod-1",
    }
    container["env"].append({"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}})
    with pytest.raises(Unsupported, match="Secret missing key k"):
        resolve_env(container, manifests, "pod-1")


def test_a_pod_runs_with_its_security_context_volumes_and_probes(tmp_path: Path) -> None:
    config = {"kind": "ConfigMap", "metadata": {"name": "data"}, "data": {"a.yaml": "a: 1", "b.yaml": "b: 2"}}
    pod = {
        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001, "runAsNonRoot": True},
        "terminationGracePeriodSeconds": 600,
        "containers": [
            {
                "name": "app",
                "image": "technoshare/composer:abc",
                "command": ["uvicorn", "--port", "8003"],
                "ports": [{"name": "http", "containerPort": 8003}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
                "resources": {"limits": {"memory": "1Gi"}},
                "securityContext": {
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "data", "mountPath": "/app/data", "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "data", "configMap": {"name": "data", "items": [{"key": "b.yaml", "path": "prompts/b.yaml"}]}},
        ],
    }
    [run] = container_runs(Workload("Deployment", "composer", pod), Manifests([config], "ns"), tmp_path)
    assert run.user == "10001:10001" and run.group_add == ["10001"]
    assert run.read_only and run.cap_drop == ["ALL"] and run.security_opt == ["no-new-privileges"]
    assert run.entrypoint == ["uvicorn", "--port", "8003"] and run.command is None
    assert run.tmpfs == {"/tmp": f"mode=1777,size={2**30}"}
    assert run.mem_limit == 2**30 and run.stop_timeout == 600
    [(folder, mount)] = run.volumes.items()
    assert mount == {"bind": "/app/data", "mode": "ro"}
    assert (Path(folder) / "prompts" / "b.yaml").read_text() == "b: 2" and not (Path(folder) / "a.yaml").exists()
    [probe] = run.probes
    assert (probe.kind, probe.path, probe.port, probe.period) == ("readiness", "/readyz", 8003, 5.0)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda pod: pod.update(initContainers=[]), "pod fields"),
        (lambda pod: pod["containers"][0].update(envFrom=[]), "fields"),
        (lambda pod: pod["containers"][0].update(securityContext={"privileged": True}), "privileged"),
        (lambda pod: pod.update(volumes=[{"name": "v", "hostPath": {"path": "/"}}]), "hostPath"),
        (lambda pod: pod["containers"][0].update(livenessProbe={"exec": {"command": ["true"]}}), "livenessProbe"),
        (
            lambda pod: pod["containers"][0].update(
                readinessProbe={"httpGet": {"path": "/", "port": 80, "scheme": "HTTPS"}}
            ),
            "readinessProbe",
        ),
        (lambda pod: pod.update(securityContext={"readOnlyRootFilesystem": True}), "pod securityContext"),
        (
            lambda pod: pod.update(volumes=[{"name": "v", "configMap": {"name": "c", "defaultMode": 0o755}}]),
            "defaultMode",
        ),
    ],
)
def test_what_it_cannot_run_faithfully_is_refused(change, refusal: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pod: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
    change(pod)
    if any(v["name"] == "v" for v in pod.get("volumes", [])):
        pod["containers"][0]["volumeMounts"] = [{"name": "v", "mountPath": "/host"}]
    with pytest.raises(Unsupported, match=refusal):
        container_runs(Workload("Deployment", "d", pod), Manifests([], "ns"), tmp_path)


def test_hooks_run_in_weight_then_name_order_and_workloads_run_one_pod() -> None:
    manifests = Manifests(
        [
            job("prompt-sync", "post-install,post-upgrade", 10),
            job("db", "post-install,pre-upgrade", 5),
            job("b", "post-install", 5),
        ],
        "ns",
    )
    assert [w.name for w in manifests.hooks("post-install")] == ["b", "db", "prompt-sync"]
    assert [w.name for w in manifests.hooks("pre-upgrade")] == ["db"]
    with pytest.raises(Unsupported, match="2 replicas"):
        Manifests([deployment("d", {"containers": []}, replicas=2)], "ns").workloads()


def test_services_resolve_by_every_cluster_name_and_route_to_their_target_port() -> None:
    pod = {"containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 5000}]}]}
    service = {
        "kind": "Service",
        "metadata": {"name": "mlflow"},
        "spec": {"selector": {"app": "mlflow"}, "ports": [{"name": "http", "port": 5000, "targetPort": "http"}]},
    }
    manifests = Manifests([deployment("mlflow", pod), service], "technoshare")
    assert manifests.service_names("mlflow") == [
        "mlflow",
        "mlflow.technoshare",
        "mlflow.technoshare.svc",
        "mlflow.technoshare.svc.cluster.local",
    ]
    service["spec"]["ports"][0]["port"] = 80
    [route] = manifests.service_routes()
    assert (route.service, route.port, route.backend, route.target_port) == ("mlflow", 80, "mlflow", 5000)
    service["spec"]["ports"][0]["targetPort"] = "grpc"
    with pytest.raises(Unsupported, match="no port named grpc on mlflow"):
        manifests.service_routes()


def test_unknown_kinds_are_refused() -> None:
    Manifests([{"kind": "NetworkPolicy", "metadata": {"name": "n"}}], "ns").check_kinds()
    with pytest.raises(Unsupported, match="ScaledObject"):
        Manifests([{"kind": "ScaledObject", "metadata": {"name": "s"}}], "ns").check_kinds()
