"""The chart gives each workload its own token and each service exactly the callers of the architecture."""

import hashlib
import json
from typing import Any

from tests.support.helm import CHART, deployments, helm, pod_templates, render

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


def _workload_specs(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component: pod["spec"] for component, pod in pod_templates(documents).items()}


def _mlflow_refs(spec: dict[str, Any]) -> dict[str, Any]:
    env = {e["name"]: e for c in spec["containers"] for e in c.get("env", [])}
    return {
        name: env[name].get("value") or env[name]["valueFrom"]["secretKeyRef"]["key"]
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        if name in env
    }


def test_under_mlflow_auth_each_workload_signs_in_as_its_own_user_and_only_the_operator_holds_the_admin() -> None:
    documents = render("--set", "mlflow.auth.enabled=true")
    [secret] = [d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-mlflow-auth")]
    passwords = {k: v for k, v in secret["stringData"].items() if k.endswith("-password")}
    assert len(set(passwords.values())) == len(passwords)  # no two users, nor the admin, share a password
    specs = _workload_specs(documents)
    for user in ("ingest", "dispatcher", "retrieval", "llm-gateway", "composer", "poster", "eval", "prompt-sync"):
        assert _mlflow_refs(specs[user]) == {
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": f"{user}-password",
        }, user
    admins = {
        name for name, spec in specs.items() if _mlflow_refs(spec).get("MLFLOW_TRACKING_PASSWORD") == "admin-password"
    }
    assert admins == {"mlflow-users", "test"}  # the hook Job that makes the users, and the operator's helm test
    users_job = json.loads(
        next(e["value"] for e in specs["mlflow-users"]["containers"][0]["env"] if e["name"] == "MLFLOW_USERS")
    )
    assert set(users_job) == {k.removesuffix("-password") for k in passwords} - {"admin"}
    assert users_job["composer"] == {"experiments": ["technoshare_commentator"]}
    assert [user for user, needs in users_job.items() if needs.get("admin")] == ["prometheus"]  # MLflow's /metrics
    assert "prompts" in users_job["prompt-sync"] and not any(
        "prompts" in v for k, v in users_job.items() if k != "prompt-sync"
    )
    again = render("--set", "mlflow.auth.enabled=true")
    [same] = [d for d in again if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-mlflow-auth")]
    assert same["stringData"] == secret["stringData"]  # derived from the admin's: stable wherever it is


def test_with_an_existing_mlflow_auth_secret_every_workload_uses_the_admin_and_no_users_are_made() -> None:
    documents = render("--set", "mlflow.auth.enabled=true", "--set", "mlflow.auth.existingSecret=mine")
    specs = _workload_specs(documents)
    assert "mlflow-users" not in specs
    for name in ("ingest", "composer", "eval", "prompt-sync"):
        assert _mlflow_refs(specs[name]) == {
            "MLFLOW_TRACKING_USERNAME": "admin-username",
            "MLFLOW_TRACKING_PASSWORD": "admin-password",
        }, name
