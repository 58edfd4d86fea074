"""The chart gives each workload its own token and each service exactly the callers of the architecture."""

import json
from typing import Any

from tests.rehearsal.kube import expand
from tests.support.helm import CHART, deployments, helm, render

ACCEPTED = {
    "ingest": {"composer", "operator"},
    "retrieval": {"composer", "operator"},
    "llm-gateway": {"composer", "eval", "operator"},
    "composer": {"ingest", "eval", "operator"},
    "poster": {"composer"},
}


def token_env(container: dict[str, Any], secret: dict[str, str]) -> dict[str, str]:
    """The container's env with secret values filled in and $(VAR) expanded, as the kubelet would."""
    env: dict[str, str] = {}
    for entry in container["env"]:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref["name"].endswith("-internal-token"):
            env[entry["name"]] = secret[ref["key"]]
        elif "value" in entry:
            env[entry["name"]] = expand(str(entry["value"]), env)
    return env


def test_each_service_accepts_exactly_its_callers_and_holds_only_its_own_token() -> None:
    documents = render()
    [secret] = [d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-internal-token")]
    tokens: dict[str, str] = secret["stringData"]
    assert len(set(tokens.values())) == len(tokens)  # no two callers share a token
    by_token = {token: key for key, token in tokens.items()}
    for service, spec in deployments(documents).items():
        if service not in ACCEPTED:
            continue
        env = token_env(spec["containers"][0], tokens)
        assert by_token[env["TECHNOSHARE_INTERNAL_TOKEN"]] == service
        accepted = json.loads(env["TECHNOSHARE_CALLER_TOKENS"])
        assert set(accepted) == ACCEPTED[service], service
        for caller, token in accepted.items():
            assert by_token[token] == ("token" if caller == "operator" else caller), (service, caller)


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
    services = {f"t-technoshare-{s}" for s in ("ingest", "retrieval", "llm-gateway", "composer", "poster")}
    assert services <= changed
