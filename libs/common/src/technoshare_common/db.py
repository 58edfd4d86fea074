"""SQLAlchemy engines for the stores: PostgreSQL in the cluster, a SQLite file on the embedded default."""

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, MetaData, Table, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError


def normalise_database_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Every wait on PostgreSQL has an end: a database that stops answering fails calls instead of hanging them.

    `connect_seconds` bounds a new connection (psycopg times the whole start-up), `statement_seconds` each statement
    on the server, `pool_seconds` the wait for a pooled connection. TCP keepalives (probe after 30 s idle, every
    10 s, 3 tries) and `tcp_user_timeout` (unacknowledged data for as long as a statement may run) find a
    connection whose peer vanished in about a minute instead of the OS's two hours."""

    connect_seconds: float = 5.0
    statement_seconds: float = 30.0
    pool_seconds: float = 10.0

    def postgresql_connect_args(self) -> dict[str, object]:
        return {
            "connect_timeout": max(2, round(self.connect_seconds)),  # libpq's floor is 2 s
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": round(self.statement_seconds * 1000),
        }


DEFAULT_TIMEOUTS = DatabaseTimeouts()


def make_engine(url: str, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS) -> Engine:
    url = normalise_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets readers proceed while the dispatcher writes; busy_timeout absorbs short locks.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=timeouts.pool_seconds,
        connect_args=timeouts.postgresql_connect_args(),
    )

    @event.listens_for(engine, "connect")
    def _statement_timeout(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # A SET rather than the `options` start-up parameter, which PgBouncer refuses unless told to ignore it.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {round(timeouts.statement_seconds * 1000)}")
        dbapi_connection.commit()

    return engine


def create_tables(engine: Engine, metadata: MetaData, attempts: int = 5) -> None:
    """metadata.create_all, safe when replicas start at once (the acks and the dispatcher Deployments do): the one
    that loses the race to create a table (PostgreSQL: a unique violation in its catalog; SQLite: "already exists")
    tries again and finds it made."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def add_missing_columns(engine: Engine, table: Table) -> None:
    """Columns added to a table since its store was created: additive only, so an older database keeps working
    (create_all creates missing tables, never missing columns)."""
    existing = {column["name"] for column in inspect(engine).get_columns(table.name)}
    for column in table.columns:
        if column.name in existing:
            continue
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
        except DBAPIError:  # another replica starting at the same moment added it first
            if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                raise
