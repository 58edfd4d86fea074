"""The chart gives each workload its own token and each service exactly the callers of the architecture."""

import json
from typing import Any

from tests.rehearsal.kube import expand
from tests.support.helm import deployments, render

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
