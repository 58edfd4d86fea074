"""The chart's NetworkPolicies, rendered by the real helm: egress to the internet never reaches a private range, in
IPv4 or IPv6, directly or through the well-known NAT64 prefix."""

import ipaddress
from typing import Any

from tests.support.helm import render

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
