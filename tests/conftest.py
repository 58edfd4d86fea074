import functools
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import docker
import pytest
from sqlalchemy import create_engine, make_url, text

if TYPE_CHECKING:
    from tests.support.scripted_llm import ScriptedLLM

POSTGRES_IMAGE = "postgres:16-alpine"
LOCAL_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


POSTGRES_USED = pytest.StashKey[str]()


class PostgresPlan(NamedTuple):
    container: bool
    ryuk: bool
    says: str


@functools.cache
def _postgres_plan() -> PostgresPlan:
    """Where the PostgreSQL tests run, decided once per session and said in pytest's header.

    testcontainers pulls the images a Docker engine lacks, and a machine may run one that reaches no
    registry: a container only when its image is already there, and Ryuk (which removes it if pytest dies)
    only when its image is there too; else the local server.
    """
    if url := os.environ.get("TEST_POSTGRES_URL"):
        return PostgresPlan(False, False, f"TEST_POSTGRES_URL {make_url(url).render_as_string(hide_password=True)}")
    from testcontainers.core.config import testcontainers_config

    local, ryuk_image = f"the local server {LOCAL_POSTGRES_URL}", testcontainers_config.ryuk_image
    try:
        docker_engine = docker.from_env(timeout=10)
        try:
            postgres_here, ryuk_here = (_has_image(docker_engine, name) for name in (POSTGRES_IMAGE, ryuk_image))
        finally:
            docker_engine.close()
    except docker.errors.DockerException:
        return PostgresPlan(False, False, f"{local} (no Docker engine answers)")
    if not postgres_here:
        return PostgresPlan(False, False, f"{local} ({POSTGRES_IMAGE} is not in the Docker engine)")
    container = f"a testcontainer {POSTGRES_IMAGE}"
    if testcontainers_config.ryuk_disabled:
        return PostgresPlan(True, False, f"{container}, Ryuk disabled by TESTCONTAINERS_RYUK_DISABLED")
    if not ryuk_here:
        return PostgresPlan(True, False, f"{container}, Ryuk off ({ryuk_image} is not in the Docker engine)")
    return PostgresPlan(True, True, f"{container} with Ryuk")


def _has_image(docker_engine: docker.DockerClient, name: str) -> bool:
    try:
        docker_engine.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def pytest_report_header(config: pytest.Config) -> str:
    return f"postgres: {_postgres_plan().says}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Also under -q, which shows no header."""
    if POSTGRES_USED in config.stash:
        terminalreporter.write_line(f"PostgreSQL tests ran on {config.stash[POSTGRES_USED]}")


@pytest.fixture(scope="session")
def postgres_server_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """A real PostgreSQL: TEST_POSTGRES_URL, a testcontainer when its image is here, else the local server."""
    plan = _postgres_plan()
    pytestconfig.stash[POSTGRES_USED] = plan.says
    if plan.container:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.postgres import PostgresContainer

        # the same setting as TESTCONTAINERS_RYUK_DISABLED, else testcontainers would pull Ryuk's image
        testcontainers_config.ryuk_disabled = not plan.ryuk
        with PostgresContainer(POSTGRES_IMAGE, driver="psycopg") as container:
            yield container.get_connection_url()
        return
    yield os.environ.get("TEST_POSTGRES_URL", LOCAL_POSTGRES_URL)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database per test, dropped afterwards."""
    name = f"technoshare_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = postgres_server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the shared MLflow server are marked `mlflow` here, so none can miss the mark `make test-fast`
    leaves out."""
    for item in items:
        if "mlflow_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mlflow)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow server (SQLite + local artifacts) shared by the tests that read back what was logged."""
    from tests.support.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def llm() -> Iterator[tuple["ScriptedLLM", str]]:
    """The scripted OpenAI-protocol upstream (tests/support/scripted_llm.py) in a thread, and its URL."""
    from tests.support.scripted_llm import ScriptedLLM
    from tests.support.servers import serve_in_thread

    scripted = ScriptedLLM()
    with serve_in_thread(scripted.app) as url:
        yield scripted, url
