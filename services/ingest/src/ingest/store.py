"""The durable job store: every accepted link is a row until it ends as a reply or an outcome."""

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ingest.slack_events import SharedLink
from technoshare_common.db import make_engine
from technoshare_common.schemas import ComposeResult, JobCheckpoints, JobState, JobView, Outcome

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    lease_token: str
    attempts: int
    channel_id: str
    message_ts: str
    thread_ts: str
    url: str
    slack_text: str
    checkpoints: JobCheckpoints | None = None


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


class JobStore:
    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        self._now: ColumnElement[float] = literal_column(_NOW_SQL[self.engine.dialect.name], Float)
        # PostgreSQL locks the row it claims and skips rows other replicas hold; SQLite serialises writers anyway.
        self._skip_locked = self.engine.dialect.name == "postgresql"

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)
        # Columns added since a store was created: additive only, so an older database keeps working.
        existing = {column["name"] for column in inspect(self.engine).get_columns(Job.__tablename__)}
        with self.engine.begin() as conn:
            for column in Job.__table__.columns:
                if column.name not in existing:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    conn.execute(text(f"ALTER TABLE {Job.__tablename__} ADD COLUMN {column.name} {kind}"))

    def find_by_reply(self, channel_id: str, slack_message_ts: str) -> tuple[str, str | None] | None:
        """(job id, trace id) of the job whose reply is this Slack message: a reaction's target."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Job.id, Job.trace_id).where(
                    Job.channel_id == channel_id, Job.slack_message_ts == slack_message_ts
                )
            ).first()
        return (row.id, row.trace_id) if row else None

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def enqueue(self, link: SharedLink, event_id: str | None) -> tuple[str, bool]:
        """Insert a job for a shared link; a repeat of the same (channel, ts, url) returns the first."""
        job_id = uuid.uuid4().hex
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(Job).values(
                        id=job_id,
                        event_id=event_id,
                        channel_id=link.channel_id,
                        message_ts=link.message_ts,
                        thread_ts=link.thread_ts,
                        url=link.url,
                        slack_text=link.text,
                        state=JobState.queued.value,
                        attempts=0,
                        next_attempt_at=self._now,
                        created_at=self._now,
                        timings_json="{}",
                        gate_failures_json="[]",
                    )
                )
            return job_id, True
        except IntegrityError:
            with self.engine.connect() as conn:
                existing = conn.execute(
                    select(Job.id).where(
                        Job.channel_id == link.channel_id,
                        Job.message_ts == link.message_ts,
                        Job.url == link.url,
                    )
                ).scalar_one()
            return existing, False

    def _due(self) -> ColumnElement[bool]:
        """Queued and past its backoff, or running under a lease that has run out."""
        return or_(
            and_(Job.state == JobState.queued.value, Job.next_attempt_at <= self._now),
            and_(Job.state == JobState.running.value, Job.lease_expires_at < self._now),
        )

    def claim_next(self, lease_seconds: float) -> ClaimedJob | None:
        """Take one due job under a fresh lease, timed on the database's clock."""
        due = self._due()
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
                        started_at=self._now,
                    )
                )
                if claimed.rowcount == 1:
                    row = conn.execute(select(Job.__table__).where(Job.id == job_id)).one()
                    return ClaimedJob(
                        id=row.id,
                        lease_token=token,
                        attempts=row.attempts,
                        channel_id=row.channel_id,
                        message_ts=row.message_ts,
                        thread_ts=row.thread_ts,
                        url=row.url,
                        slack_text=row.slack_text,
                        checkpoints=_checkpoints(row.checkpoints_json),
                    )
        return None

    def save_checkpoints(self, job_id: str, finished: JobCheckpoints) -> list[str] | None:
        """Merge newly finished stages into the job's checkpoints; None when there is no such job.

        Any attempt's output is kept, even a stale one's: it is a finished stage of the same job.
        """
        with self.engine.begin() as conn:
            query = select(Job.checkpoints_json).where(Job.id == job_id)
            if self._skip_locked:
                query = query.with_for_update()
            row = conn.execute(query).one_or_none()
            if row is None:
                return None
            saved = _checkpoints(row.checkpoints_json) or JobCheckpoints()
            merged = saved.model_copy(update={name: value for name, value in finished if value is not None})
            conn.execute(update(Job).where(Job.id == job_id).values(checkpoints_json=merged.model_dump_json()))
        return merged.stages()

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
            },
        )

    def fail(self, job: ClaimedJob, error: str) -> bool:
        return self._update_leased(job, self._finished(Outcome.error, error))

    @staticmethod
    def _finished(outcome: Outcome, error: str | None) -> dict[str, object]:
        return {
            "state": JobState.done.value,
            "outcome": outcome.value,
            "finished_at": time.time(),
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
