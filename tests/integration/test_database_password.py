"""A database password with @, /, :, # and % reaches PostgreSQL from pods started with the chart's environment: the
URLs carry no password (it would break them) and libpq reads PGPASSWORD. Checked for the job store (psycopg 3) and
for MLflow's basic-auth database, whose URL also goes through an INI file (psycopg 3 there too)."""

import configparser
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.store.db.utils import create_sqlalchemy_engine_with_retry
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ingest.slack_events import SharedLink
from ingest.store import JobStore
from tests.support.helm import deployments, pod_env, render

PASSWORD = "p@ss/w:rd#%1"


@pytest.fixture
def role(postgres_server_url: str) -> Iterator[str]:
    """A login role with PASSWORD, owning a fresh database of the same name."""
    name = f"technoshare_pw_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD.replace('%', '%%')}'")  # psycopg's %
        conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {name}")
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        admin.dispose()


@pytest.fixture
def chart(role: str, postgres_server_url: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The chart on that database as an external one, the password in the Secret the chart creates."""
    server = make_url(postgres_server_url)
    database = {"host": server.host, "port": server.port or 5432, "username": role, "password": PASSWORD}
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "postgresql": {"enabled": False},
                "externalDatabase": database | {"mlflowDatabase": role, "jobsDatabase": role},
                "mlflow": {"auth": {"enabled": True}},
            }
        )
    )
    return render("-f", str(values))


def assert_connects_as(engine: Engine, role: str) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == role
        assert conn.connection.dbapi_connection.info.password == PASSWORD  # libpq took it from PGPASSWORD


def test_the_job_store_connects_with_the_charts_url_and_pgpassword(
    chart: list[dict[str, Any]], role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = pod_env(deployments(chart)["ingest"]["containers"][0], chart, "ingest-0")
    assert env["PGPASSWORD"] == PASSWORD
    monkeypatch.setenv("PGPASSWORD", env["PGPASSWORD"])

    store = JobStore(env["JOB_STORE_DATABASE_URL"])
    store.create_schema()
    job_id, created = store.enqueue(SharedLink("C1", "1.1", "1.1", "https://example.com", "<https://example.com>"), "E")
    assert created and store.get(job_id) is not None
    assert_connects_as(store.engine, role)
    store.engine.dispose()


def test_mlflow_basic_auth_reads_the_url_from_its_ini_and_connects(
    chart: list[dict[str, Any]], role: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    container = deployments(chart)["mlflow"]["containers"][0]
    env = pod_env(container, chart, "mlflow-0")
    monkeypatch.setenv("PGPASSWORD", env["PGPASSWORD"])
    [write_ini] = [line for line in container["args"][0].splitlines() if "basic_auth.ini" in line]
    ini = tmp_path / "basic_auth.ini"
    subprocess.run(["/bin/sh", "-ec", write_ini.replace("/tmp/basic_auth.ini", str(ini))], env=env, check=True)

    # As mlflow.server.auth reads it (importing that needs Flask-WTF, which only MLflow's image has): a `%` in the
    # URL would be refused here by ConfigParser's interpolation.
    config = configparser.ConfigParser()
    config.read(ini)
    engine = create_sqlalchemy_engine_with_retry(config["mlflow"]["database_uri"])  # how its auth store connects
    assert_connects_as(engine, role)
    engine.dispose()
