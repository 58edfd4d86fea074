"""The chart's NetworkPolicies, rendered by the real helm: egress to the internet never reaches a private range, in
IPv4 or IPv6, directly or through the well-known NAT64 prefix."""

import ipaddress
from typing import Any

from tests.support.helm import CHART, pod_templates, render

PRIVATE_BEHIND = ["10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1"]


def egress_blocks(documents: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    [policy] = [
        doc
        for doc in documents
        if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == f"t-technoshare-{component}-egress"
    ]
    return [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer]


def reachable(blocks: list[dict[str, Any]], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    for block in blocks:
        network = ipaddress.ip_network(block["cidr"])
        if ip.version == network.version and ip in network:
            excepted = [ipaddress.ip_network(e) for e in block.get("except") or []]
            if not any(ip in e for e in excepted if e.version == ip.version):
                return True
    return False


def test_every_except_lies_inside_its_own_block() -> None:
    """Kubernetes refuses an ipBlock whose `except` is outside its `cidr` (an IPv6 range under 0.0.0.0/0)."""
    documents = render()
    for component in ("retrieval", "llm-gateway", "poster"):
        for block in egress_blocks(documents, component):
            network = ipaddress.ip_network(block["cidr"])
            for excepted in block.get("except") or []:
                inner = ipaddress.ip_network(excepted)
                assert inner.version == network.version and inner.subnet_of(network), (component, block)  # type: ignore[arg-type]


def test_retrieval_reaches_public_addresses_only_in_both_families_and_through_nat64() -> None:
    blocks = egress_blocks(render(), "retrieval")
    assert reachable(blocks, "93.184.215.14") and reachable(blocks, "2606:4700::6810:84e5")
    assert reachable(blocks, "64:ff9b::808:808")  # a public site behind NAT64, on an IPv6-only cluster
    for address in PRIVATE_BEHIND:
        nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(ipaddress.IPv4Address(address)))
        assert not reachable(blocks, address), address
        assert not reachable(blocks, str(nat64)), nat64
    for address in ("fd00::1", "fe80::1", "64:ff9b:1::a00:1"):
        assert not reachable(blocks, address), address


# The architecture inside the release: (caller, callee, port). Nothing else may cross between its pods.
EDGES = {
    ("test", "ingest", 3000),
    ("composer", "dispatcher", 3001),
    ("test", "dispatcher", 3001),
    ("composer", "retrieval", 8001),
    ("test", "retrieval", 8001),
    ("composer", "llm-gateway", 8002),
    ("eval", "llm-gateway", 8002),
    ("test", "llm-gateway", 8002),
    ("dispatcher", "composer", 8003),
    ("eval", "composer", 8003),
    ("test", "composer", 8003),
    ("composer", "poster", 8004),
    ("test", "poster", 8004),
    *{
        (caller, "mlflow", 5000)
        for caller in (
            "ingest",
            "dispatcher",
            "retrieval",
            "llm-gateway",
            "composer",
            "poster",
            "eval",
            "prompt-sync",
            "mlflow-users",
            "test",
        )
    },
    ("eval", "pushgateway", 9091),
    ("test", "pushgateway", 9091),
    *{
        (caller, "postgresql", 5432)
        for caller in ("ingest", "dispatcher", "poster", "llm-gateway", "mlflow", "mlflow-db-upgrade", "mlflow-gc")
    },
    ("mlflow", "minio", 9000),
    ("mlflow-gc", "minio", 9000),
    ("minio-bucket", "minio", 9000),
}


def pod_labels(documents: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Each component's pod labels, from every kind of workload the chart renders."""
    return {component: pod["metadata"]["labels"] for component, pod in pod_templates(documents).items()}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    return all(
        labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions") or [] if e["operator"] == "In"
    )


def _rule_allows(
    rule_peers: list[dict[str, Any]], ports: list[dict[str, Any]] | None, peer: dict[str, str], port: int
) -> bool:
    peer_ok = any(
        "podSelector" in p and "namespaceSelector" not in p and selects(p["podSelector"], peer) for p in rule_peers
    )
    return peer_ok and (not ports or any(p.get("port") == port for p in ports))


def allowed(policies: list[dict[str, Any]], caller: dict[str, str], callee: dict[str, str], port: int) -> bool:
    """Kubernetes' semantics for two pods of one namespace: the caller's egress and the callee's ingress must both
    allow the connection (a pod no policy of a type selects is open in that direction)."""

    def direction(kind: str, key: str, own: dict[str, str], other: dict[str, str]) -> bool:
        selecting = [p for p in policies if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], own)]
        return not selecting or any(
            _rule_allows(rule.get(key) or [], rule.get("ports"), other, port)
            for policy in selecting
            for rule in policy["spec"].get(kind.lower()) or []
        )

    return direction("Egress", "to", caller, callee) and direction("Ingress", "from", callee, caller)


def test_the_pods_of_the_release_reach_exactly_the_edges_of_the_architecture() -> None:
    documents = render("--set", "mlflow.gc.enabled=true", "--set", "mlflow.auth.enabled=true")
    policies = [doc for doc in documents if doc["kind"] == "NetworkPolicy"]
    pods = pod_labels(documents)
    ports = {callee: port for _, callee, port in EDGES}
    assert set(pods) >= {c for edge in EDGES for c in edge[:2]}, sorted(pods)
    reached = {
        (caller, callee, port)
        for caller, caller_labels in pods.items()
        for callee, port in ports.items()
        if caller != callee and allowed(policies, caller_labels, pods[callee], port)
    }
    assert reached == EDGES, (sorted(reached - EDGES), sorted(EDGES - reached))


def test_only_the_pods_that_use_an_external_store_may_reach_it() -> None:
    documents = render(
        "-f", str(CHART / "ci" / "external-values.yaml"), "--set", "externalDatabase.cidrs={10.20.0.0/16}"
    )
    policies = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "NetworkPolicy"}
    database = policies["t-technoshare-external-database"]["spec"]
    [components] = [e["values"] for e in database["podSelector"]["matchExpressions"] if e["key"].endswith("component")]
    assert set(components) == {
        "ingest",
        "dispatcher",
        "poster",
        "llm-gateway",
        "mlflow",
        "mlflow-db-upgrade",
        "mlflow-gc",
    }
    assert database["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 5432}]}
    ]
    s3 = policies["t-technoshare-external-s3"]["spec"]
    [components] = [e["values"] for e in s3["podSelector"]["matchExpressions"] if e["key"].endswith("component")]
    assert set(components) == {"mlflow", "mlflow-gc"}  # retrieval's denied ranges are no longer undone by a 0/0 rule
