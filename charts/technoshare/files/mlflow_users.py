"""MLflow users for the release, each with only what its workload needs (the chart's mlflow-users hook Job).

Runs as MLflow's admin, in MLflow's own image (its basic-auth client), after every install and upgrade:
- creates the experiments the workloads write to, so none of them owns one;
- creates each workload's user, or sets its password again (the chart derives it from the admin's);
- grants each user its permissions: EDIT on the experiments it writes to, MANAGE on the prompts for prompt-sync, and
  admin to `prometheus` alone (MLflow 3's basic-auth app, failing closed, lets only admins read /metrics).
Everything else stays MLflow's `default_permission` (READ): no service may change a prompt or its alias, manage
users or delete an experiment, so a compromised pod cannot rewrite the prompts every reply is written with.
MLflow creates its admin only once: to change `mlflow.auth.adminPassword` later, change it in MLflow first.

A new user is created with a throwaway password and gets its real one only after its grants: until then its
workload's calls fail 401, which the services' spools wait out, never 403, which they would set aside.

Input: MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD (the admin), MLFLOW_USERS (JSON: user -> {"experiments":
[names], "prompts": [names], "admin": bool}) and a file per user in MLFLOW_USER_PASSWORDS_DIR named `<user>-password`.
"""

import json
import os
import secrets
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient

WAIT_SECONDS = 240  # within Helm's default hook timeout (5 minutes)


def wait_for_mlflow(client: MlflowClient) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            client.get_experiment_by_name("Default")
            return
        except MlflowException as exc:
            if time.monotonic() > deadline:
                raise
            print(f"waiting for MLflow: {str(exc).splitlines()[0][:200]}", flush=True)
            time.sleep(5)


def experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as exc:  # created meanwhile by another run of this Job
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def user_exists(auth: AuthServiceClient, user: str) -> bool:
    try:
        auth.get_user(user)
        return True
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def grant(auth: AuthServiceClient, user: str, resource_type: str, resource_id: str, permission: str) -> None:
    """Exactly `permission`: one granted earlier with another level is replaced."""
    try:
        auth.grant_user_permission(user, resource_type, resource_id, permission)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(user, resource_type, resource_id)
        auth.grant_user_permission(user, resource_type, resource_id, permission)


def prompt_exists(client: MlflowClient, name: str) -> bool:
    """By the prompt API: the registered-model one answers "not found" for a prompt."""
    return client.get_prompt(name) is not None


def main() -> int:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    users: dict[str, dict[str, list[str]]] = json.loads(os.environ["MLFLOW_USERS"])
    passwords = Path(os.environ["MLFLOW_USER_PASSWORDS_DIR"])
    client, auth = MlflowClient(uri), AuthServiceClient(uri)
    wait_for_mlflow(client)
    experiments = {name: experiment_id(client, name) for needs in users.values() for name in needs["experiments"]}
    for user, needs in sorted(users.items()):
        password = (passwords / f"{user}-password").read_text().strip()
        new = not user_exists(auth, user)
        if new:
            auth.create_user(user, secrets.token_urlsafe(24))
        for name in needs["experiments"]:
            grant(auth, user, "experiment", experiments[name], "EDIT")
        # A prompt prompt-sync has not registered yet is its own once it does (its creator manages it).
        for name in needs.get("prompts", []):
            if prompt_exists(client, name):
                grant(auth, user, "prompt", name, "MANAGE")
        auth.update_user_admin(user, bool(needs.get("admin")))
        auth.update_user_password(user, password)
        print(f"{'created' if new else 'updated'} {user}: EDIT on {needs['experiments']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
