"""The durable job store: every accepted link is a row until it ends as a reply or an outcome."""

import contextlib
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    Column,
    ColumnElement,
    Float,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool

from ingest.slack_events import SharedLink
from technoshare_common.db import DEFAULT_TIMEOUTS, DatabaseTimeouts, add_missing_columns, create_tables, make_engine
from technoshare_common.schemas import MAX_LINK_CHARS, ComposeResult, JobCheckpoints, JobState, JobView, Outcome

log = logging.getLogger(__name__)


DEFAULT_MAX_CLAIMS = 25  # JOB_MAX_CLAIMS: above the 13 attempts the default retry window allows


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("channel_id", "message_ts", "url", name="uq_jobs_message_url"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str | None] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2048))
    slack_text: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    outcome: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Claims so far, never refunded (attempts is, at a give-back): each claim's number fences a stale attempt.
    claims: Mapped[int | None] = mapped_column(Integer)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float, index=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    timings_json: Mapped[str] = mapped_column(Text, default="{}")
    reply_text: Mapped[str | None] = mapped_column(Text)
    gate_failures_json: Mapped[str] = mapped_column(Text, default="[]")
    error: Mapped[str | None] = mapped_column(Text)
    slack_message_ts: Mapped[str | None] = mapped_column(String(32))
    trace_id: Mapped[str | None] = mapped_column(String(64))
    checkpoints_json: Mapped[str | None] = mapped_column(Text)
    # Why ingest refused the link (link_problem): such a job gets the unreadable notice, never a fetch.
    link_problem: Mapped[str | None] = mapped_column(String(200))
    # The sender's pseudonym (SharedLink.user): the trace's mlflow.trace.user.
    user_pseudonym: Mapped[str | None] = mapped_column(String(64))
    # The app version that made the reply: a vote on it counts for that version (technoshare_live_feedback_total).
    app_version: Mapped[str | None] = mapped_column(String(64))


def _claims() -> ColumnElement[int]:
    """A job's claims so far; a row claimed before claims were counted has only its attempts."""
    return func.coalesce(Job.claims, Job.attempts)


@dataclass(frozen=True)
class RepliedJob:
    """A job found by its reply's message: where a vote on that reply goes."""

    id: str
    trace_id: str | None
    app_version: str | None


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    lease_token: str
    attempts: int
    claim: int
    channel_id: str
    message_ts: str
    thread_ts: str
    url: str
    slack_text: str
    checkpoints: JobCheckpoints | None = None
    age_seconds: float = 0.0  # since the link was accepted, on the database's clock
    link_problem: str | None = None
    user_pseudonym: str | None = None


class StaleAttempt(Exception):
    """A checkpoint from an attempt that no longer holds the job: its lease was taken over or given back."""


@dataclass(frozen=True)
class QueueStats:
    """What /metrics reports about the queue, read off the request path."""

    by_state: dict[str, int]
    due: int
    oldest_due_age_seconds: float


# The database's clock as epoch seconds: leases and backoffs mean the same on every replica, whatever its own clock.
_NOW_SQL = {
    "postgresql": "extract(epoch FROM clock_timestamp())",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def _checkpoints(stored: str | None) -> JobCheckpoints | None:
    """Checkpoints that no longer parse (written by another version's models) are dropped and the job composes
    again: one such row must never fail every claim, which would stop dispatch on every replica."""
    if not stored:
        return None
    try:
        return JobCheckpoints.model_validate_json(stored)
    except ValidationError as error:
        log.warning("dropping checkpoints that no longer parse", extra={"errors": error.error_count()})
        return None


def _dt(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


def job_key(link: SharedLink) -> tuple[str, str, str]:
    """A job's identity: the store's unique (channel, message ts, url), the url as the column keeps it."""
    return (link.channel_id, link.message_ts, link.url[:MAX_LINK_CHARS])


def _key_columns(table: Table) -> tuple[Column[Any], ...]:
    return (table.c.channel_id, table.c.message_ts, table.c.url)


class JobStore:
    def __init__(self, database_url: str, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS) -> None:
        self.engine = make_engine(database_url, timeouts)
        self._now: ColumnElement[float] = literal_column(_NOW_SQL[self.engine.dialect.name], Float)
        # PostgreSQL locks the row it claims and skips rows other replicas hold; SQLite serialises writers anyway.
        self._skip_locked = self.engine.dialect.name == "postgresql"
        # Built once, as the ack path runs them for every link: a statement built per call costs its cache key.
        dialect_insert = postgresql.insert if self._skip_locked else sqlite.insert
        jobs: Table = Job.__table__  # type: ignore[assignment]  # a declarative class's table is a Table
        self._insert_job = (
            dialect_insert(jobs)
            .values(
                id=bindparam("id"),
                event_id=bindparam("event_id"),
                channel_id=bindparam("channel_id"),
                message_ts=bindparam("message_ts"),
                thread_ts=bindparam("thread_ts"),
                url=bindparam("url"),
                slack_text=bindparam("slack_text"),
                link_problem=bindparam("link_problem"),
                state=JobState.queued.value,
                attempts=0,
                next_attempt_at=self._now,
                created_at=self._now,
                timings_json="{}",
                gate_failures_json="[]",
            )
            .on_conflict_do_nothing(index_elements=["channel_id", "message_ts", "url"])
            .returning(jobs.c.id, *_key_columns(jobs))
        )
        self._find_jobs = select(jobs.c.id, *_key_columns(jobs)).where(
            tuple_(*_key_columns(jobs)).in_(bindparam("keys", expanding=True))
        )

    def create_schema(self) -> None:
        create_tables(self.engine, Base.metadata)
        add_missing_columns(self.engine, Job.__table__)  # type: ignore[arg-type]  # a declarative class's table

    def find_by_reply(self, channel_id: str, slack_message_ts: str) -> RepliedJob | None:
        """The job whose reply is this Slack message: a reaction's target."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Job.id, Job.trace_id, Job.app_version).where(
                    Job.channel_id == channel_id, Job.slack_message_ts == slack_message_ts
                )
            ).first()
        return RepliedJob(row.id, row.trace_id, row.app_version) if row else None

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def warm_up(self, connections: int) -> None:
        """Open `connections` pooled connections at once, so the first acks after a start do not each pay for one
        (a PostgreSQL connection costs a backend's start, tens of milliseconds on a busy node). No more than the
        pool keeps: it would close the rest on their return, and holding more than it allows would wait out its
        timeout."""
        pool = self.engine.pool
        keeps = pool.size() if isinstance(pool, QueuePool) else 1
        with contextlib.ExitStack() as held:
            for _ in range(min(connections, keeps)):
                held.enter_context(self.engine.connect())

    def enqueue(self, link: SharedLink, event_id: str | None, problem: str | None = None) -> tuple[str, bool]:
        """Insert a job for a shared link; a repeat of the same (channel, ts, url) returns the first."""
        [result] = self.enqueue_many([(link, event_id, problem)])
        return result

    def enqueue_many(self, links: Sequence[tuple[SharedLink, str | None, str | None]]) -> list[tuple[str, bool]]:
        """(job id, created) for each (link, event id, link problem), in one transaction: the acks that arrive while
        one insert runs are stored together by the next (AckStore.enqueue), one commit and two statements for them all.

        A repeat (Slack retries any event it thinks unanswered, and a batch may hold both) meets the conflict without
        a failed INSERT; the jobs it did not create are read in the same transaction. A racing insert of another
        process is waited for by PostgreSQL and serialised by SQLite, so that read finds it."""
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        for link, event_id, problem in links:
            key = job_key(link)
            rows.setdefault(
                key,
                dict(zip(("channel_id", "message_ts", "url"), key, strict=True))
                | {
                    "id": uuid.uuid4().hex,
                    "event_id": event_id,
                    "thread_ts": link.thread_ts,
                    "slack_text": link.text,
                    "link_problem": problem[:200] if problem else None,
                    "user_pseudonym": link.user or None,
                },
            )
        with self.engine.begin() as conn:
            # In key order: two batches holding the same links (Slack's retries on another replica) then lock them in
            # one order, where arrival order deadlocked PostgreSQL.
            inserted = conn.execute(self._insert_job, [rows[key] for key in sorted(rows)])
            created = {(r.channel_id, r.message_ts, r.url): r.id for r in inserted}
            ids = dict(created)
            if others := [key for key in rows if key not in created]:
                ids |= {
                    (r.channel_id, r.message_ts, r.url): r.id for r in conn.execute(self._find_jobs, {"keys": others})
                }
        results = []
        for link, _, _ in links:
            key = job_key(link)
            results.append((ids[key], created.pop(key, None) is not None))  # created: only its first occurrence
        return results

    def _due(self) -> ColumnElement[bool]:
        """Queued and past its backoff, or running under a lease that has run out."""
        return or_(
            and_(Job.state == JobState.queued.value, Job.next_attempt_at <= self._now),
            and_(Job.state == JobState.running.value, Job.lease_expires_at < self._now),
        )

    def claim_next(self, lease_seconds: float, max_claims: int = DEFAULT_MAX_CLAIMS) -> ClaimedJob | None:
        """Take one due job under a fresh lease, timed on the database's clock. A job claimed `max_claims` times
        already is never handed out again (end_overclaimed ends it): whatever keeps failing it cannot loop."""
        due = and_(self._due(), _claims() < max_claims)
        candidates_query = select(Job.id).where(due).order_by(Job.next_attempt_at, Job.created_at)
        if self._skip_locked:
            candidates_query = candidates_query.limit(1).with_for_update(skip_locked=True)
        else:
            candidates_query = candidates_query.limit(5)
        with self.engine.begin() as conn:
            for job_id in list(conn.execute(candidates_query).scalars()):
                token = uuid.uuid4().hex
                claimed = conn.execute(
                    update(Job)
                    .where(Job.id == job_id, due)
                    .values(
                        state=JobState.running.value,
                        lease_token=token,
                        lease_expires_at=self._now + lease_seconds,
                        attempts=Job.attempts + 1,
                        claims=_claims() + 1,
                        started_at=self._now,
                    )
                )
                if claimed.rowcount == 1:
                    age = (self._now - Job.created_at).label("age_seconds")
                    row = conn.execute(select(Job.__table__, age).where(Job.id == job_id)).one()
                    return ClaimedJob(
                        id=row.id,
                        lease_token=token,
                        attempts=row.attempts,
                        claim=row.claims,
                        channel_id=row.channel_id,
                        message_ts=row.message_ts,
                        thread_ts=row.thread_ts,
                        url=row.url,
                        slack_text=row.slack_text,
                        checkpoints=_checkpoints(row.checkpoints_json),
                        age_seconds=max(0.0, float(row.age_seconds)),
                        link_problem=row.link_problem,
                        user_pseudonym=row.user_pseudonym,
                    )
        return None

    def end_overclaimed(self, max_claims: int) -> int:
        """End every due job already claimed `max_claims` times as `error`, with why; the number ended.

        Such a job failed without an outcome that often (its ingest died, or its hand-off kept failing
        unexpectedly): one more claim would only repeat that."""
        error = literal("claimed ") + cast(_claims(), String) + literal(" times without an outcome (JOB_MAX_CLAIMS)")
        statement = (
            update(Job)
            .where(self._due(), _claims() >= max_claims)
            .values(self._finished(Outcome.error, None) | {"error": error})
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount

    def save_checkpoints(self, job_id: str, finished: JobCheckpoints) -> list[str] | None:
        """Merge newly finished stages into the job's checkpoints; None when there is no such job.

        One UPDATE merges them in SQL: a read-modify-write let one of two concurrent saves undo the other on SQLite.
        A save that names its attempt is kept only while that attempt holds the job (else StaleAttempt): after a
        give-back or a takeover, the old attempt's composer may still run, and must not mix its stages into the
        current attempt's.
        """
        stages = finished.model_dump(mode="json", exclude_none=True, exclude={"attempt"})
        statement = update(Job).where(Job.id == job_id).values(checkpoints_json=self._merged(stages))
        if finished.attempt is not None:
            statement = statement.where(Job.state == JobState.running.value, _claims() == finished.attempt)
        with self.engine.begin() as conn:
            saved = conn.execute(statement.returning(Job.checkpoints_json)).scalar_one_or_none()
            if saved is None and conn.execute(select(Job.id).where(Job.id == job_id)).first() is not None:
                raise StaleAttempt(f"attempt {finished.attempt} no longer holds job {job_id}")
        if saved is None:
            return None
        merged = _checkpoints(saved)
        return merged.stages() if merged else []

    def _merged(self, stages: dict[str, object]) -> ColumnElement[str]:
        """The checkpoints column with each given stage replaced whole (a top-level JSON merge)."""
        stored = func.coalesce(func.nullif(Job.checkpoints_json, ""), "{}")
        if self.engine.dialect.name == "postgresql":
            patch = cast(literal(json.dumps(stages)), JSONB)
            return cast(cast(stored, JSONB).op("||", return_type=JSONB)(patch), Text)
        pairs: list[object] = []
        for name, value in stages.items():
            pairs += [f"$.{name}", func.json(json.dumps(value))]
        return func.json_set(stored, *pairs) if pairs else stored

    def extend_lease(self, job: ClaimedJob, lease_seconds: float) -> bool:
        """The heartbeat: push the lease on while composer works; False once another replica holds the job."""
        return self._update_leased(job, {"lease_expires_at": self._now + lease_seconds})

    def abandon(self, job: ClaimedJob) -> bool:
        """Give a job back at once, its attempt refunded: this replica is shutting down, the job did nothing wrong."""
        values = {
            "state": JobState.queued.value,
            "lease_token": None,
            "lease_expires_at": None,
            "next_attempt_at": self._now,
            "attempts": Job.attempts - 1,
        }
        return self._update_leased(job, values)

    def complete(self, job: ClaimedJob, result: ComposeResult) -> bool:
        """Record the outcome; False when the lease was lost to another dispatcher meanwhile."""
        return self._update_leased(
            job,
            self._finished(result.outcome, result.error)
            | {
                "timings_json": json.dumps(result.timings),
                "reply_text": result.text,
                "gate_failures_json": json.dumps([f"{g.name}: {g.detail}" for g in result.gate_failures]),
                "slack_message_ts": result.post.message_ts if result.post else None,
                "trace_id": result.trace_id,
                "app_version": result.app_version,
            },
        )

    def fail(self, job: ClaimedJob, error: str) -> bool:
        return self._update_leased(job, self._finished(Outcome.error, error))

    def _finished(self, outcome: Outcome, error: str | None) -> dict[str, object]:
        return {
            "state": JobState.done.value,
            "outcome": outcome.value,
            "finished_at": self._now,  # the database's clock, as leases and created_at: one clock for every replica
            "lease_token": None,
            "lease_expires_at": None,
            "error": error,
        }

    def release(self, job: ClaimedJob, error: str, retry_in: float) -> bool:
        """Give a job back for a later attempt after a transient failure."""
        values = {
            "state": JobState.queued.value,
            "lease_token": None,
            "lease_expires_at": None,
            "next_attempt_at": self._now + retry_in,
            "error": error,
        }
        return self._update_leased(job, values)

    def _update_leased(self, job: ClaimedJob, values: Mapping[str, object]) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(Job).where(Job.id == job.id, Job.lease_token == job.lease_token).values(**values)
            )
            return result.rowcount == 1

    def get(self, job_id: str) -> JobView | None:
        """One job with its per-stage checkpoints."""
        with self.engine.connect() as conn:
            row = conn.execute(select(Job.__table__).where(Job.id == job_id)).one_or_none()
        if row is None:
            return None
        return self._view(row).model_copy(
            update={"checkpoints": _checkpoints(row.checkpoints_json) or JobCheckpoints()}
        )

    def find(self, channel_id: str | None = None, message_ts: str | None = None, limit: int = 50) -> list[JobView]:
        """Jobs without their checkpoints (evidence and drafts would make a list heavy): get() has them."""
        columns = [column for column in Job.__table__.columns if column.name != "checkpoints_json"]
        query = select(*columns).order_by(Job.created_at.desc()).limit(limit)
        if channel_id:
            query = query.where(Job.channel_id == channel_id)
        if message_ts:
            query = query.where(Job.message_ts == message_ts)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [self._view(row) for row in rows]

    def count_by_state(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT state, COUNT(*) FROM jobs GROUP BY state")).all()
        return {state: count for state, count in rows}

    def queue_stats(self) -> QueueStats:
        """Jobs by state, how many are due, and how long the oldest due job has waited (database clock)."""
        due_since = case((Job.state == JobState.queued.value, Job.next_attempt_at), else_=Job.lease_expires_at)
        with self.engine.connect() as conn:
            rows = conn.execute(select(Job.state, func.count()).group_by(Job.state)).all()
            due, oldest = conn.execute(select(func.count(), self._now - func.min(due_since)).where(self._due())).one()
        return QueueStats({state: count for state, count in rows}, int(due), max(0.0, float(oldest or 0.0)))

    @staticmethod
    def _view(row) -> JobView:  # type: ignore[no-untyped-def]
        return JobView(
            id=row.id,
            state=JobState(row.state),
            outcome=Outcome(row.outcome) if row.outcome else None,
            channel_id=row.channel_id,
            message_ts=row.message_ts,
            thread_ts=row.thread_ts,
            url=row.url,
            event_id=row.event_id,
            attempts=row.attempts,
            created_at=_dt(row.created_at),
            started_at=_dt(row.started_at),
            finished_at=_dt(row.finished_at),
            timings=json.loads(row.timings_json or "{}"),
            reply_text=row.reply_text,
            gate_failures=json.loads(row.gate_failures_json or "[]"),
            error=row.error,
            slack_message_ts=row.slack_message_ts,
        )
