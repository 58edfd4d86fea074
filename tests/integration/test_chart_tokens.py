"""The chart gives each workload its own token and each service exactly the callers of the architecture."""

import hashlib
import json
from typing import Any

from tests.support.helm import CHART, deployments, helm, render

ACCEPTED = {
    "ingest": {"operator"},
    "dispatcher": {"composer", "operator"},
    "retrieval": {"composer", "operator"},
    "llm-gateway": {"composer", "eval", "operator"},
    "composer": {"ingest", "eval", "operator"},
    "poster": {"composer"},
}


def test_each_service_checks_exactly_its_callers_and_holds_no_token_but_its_own() -> None:
    """A callee gets the sha256 of each caller's token, never the token: a compromised pod cannot act as its callers,
    and no service pod holds the operator's token, the root the callers' tokens are derived from."""
    documents = render()
    tokens = _secret(documents)
    assert len(set(tokens.values())) == len(tokens)  # no two callers share a token
    for service, spec in deployments(documents).items():
        if service not in ACCEPTED:
            continue
        env = spec["containers"][0]["env"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in (e.get("valueFrom") or {})]
        # The dispatcher calls composer as `ingest`; ingest's acks pods face the internet and call no one.
        own = {"ingest": [], "dispatcher": ["ingest"]}.get(service, [service])
        assert [r["key"] for r in refs if r["name"].endswith("-internal-token")] == own, service
        [accepted] = [json.loads(e["value"]) for e in env if e["name"] == "TECHNOSHARE_CALLER_TOKENS"]
        assert set(accepted) == ACCEPTED[service], service
        for caller, check in accepted.items():
            token = tokens["token" if caller == "operator" else caller]
            assert check == "sha256:" + hashlib.sha256(token.encode()).hexdigest(), (service, caller)
        values = {str(e.get("value")) for e in env}
        assert not values & set(tokens.values()), service  # no raw token in plain env either


def test_with_an_existing_secret_every_pod_shares_its_token() -> None:
    """The chart cannot know an existing Secret's tokens: one shared token (its key `token`), as before."""
    documents = render("--set", "secrets.internalToken.existingSecret=mine")
    for service, spec in deployments(documents).items():
        if service not in ACCEPTED:
            continue
        env = spec["containers"][0]["env"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in (e.get("valueFrom") or {})]
        assert [r["key"] for r in refs if r["name"] == "mine"] == ["token"], service
        assert "TECHNOSHARE_CALLER_TOKENS" not in {e["name"] for e in env}


def _secret(documents: list[dict[str, Any]]) -> dict[str, str]:
    [secret] = [d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-internal-token")]
    return secret["stringData"]


def _checksums(documents: list[dict[str, Any]]) -> dict[str, str]:
    annotations = {name: spec["metadata"].get("annotations") or {} for name, spec in _templates(documents).items()}
    return {name: notes["checksum/secret"] for name, notes in annotations.items() if "checksum/secret" in notes}


def _templates(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"] for d in documents if d["kind"] == "Deployment"}


def test_a_render_that_cannot_see_the_cluster_generates_no_secret_that_would_change() -> None:
    """`helm template` and GitOps tools see no cluster: a random token there would change on every render."""
    refused = helm("template", "t", str(CHART), "--set", "secrets.slack.signingSecret=s")
    assert refused.returncode != 0
    assert "secrets.internalToken.token (or its existingSecret) is required" in refused.stderr
    first, again = render(), render()
    assert _secret(first) == _secret(again)  # the caller tokens are derived, so stable too
    assert _checksums(first) == _checksums(again)


def test_a_rotated_token_restarts_the_pods_that_read_it() -> None:
    before, after = render(), render("--set", "secrets.internalToken.token=rotated")
    assert _secret(before)["composer"] != _secret(after)["composer"]
    changed = {name for name, checksum in _checksums(before).items() if _checksums(after)[name] != checksum}
    services = {
        f"t-technoshare-{s}" for s in ("ingest", "dispatcher", "retrieval", "llm-gateway", "composer", "poster")
    }
    assert services <= changed
