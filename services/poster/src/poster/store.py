"""Which jobs have been posted: the record that makes posting idempotent per job."""

import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Float, String, Text, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from technoshare_common.db import make_engine


class PostState(StrEnum):
    claimed = "claimed"
    posted = "posted"
    failed = "failed"


class Base(DeclarativeBase):
    pass


class SlackPost(Base):
    __tablename__ = "slack_posts"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[float] = mapped_column(Float)
    posted_at: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class Claim:
    """`previous` is the state found before this claim: None for a first attempt."""

    acquired: bool
    previous: PostState | None
    message_ts: str | None = None
    claimed_at: float | None = None


class PostStore:
    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    def claim(self, job_id: str, channel_id: str, thread_ts: str, stale_after: float) -> Claim:
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(SlackPost).values(
                        job_id=job_id,
                        state=PostState.claimed.value,
                        channel_id=channel_id,
                        thread_ts=thread_ts,
                        claimed_at=now,
                    )
                )
            return Claim(acquired=True, previous=None)
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            row = conn.execute(select(SlackPost.__table__).where(SlackPost.job_id == job_id)).one()
            state = PostState(row.state)
            if state == PostState.posted:
                return Claim(acquired=False, previous=state, message_ts=row.message_ts)
            if state == PostState.claimed and row.claimed_at > now - stale_after:
                return Claim(acquired=False, previous=state, claimed_at=row.claimed_at)
            # A failed attempt, or a claim whose holder died: take it over, unless someone else just did.
            taken = conn.execute(
                update(SlackPost)
                .where(SlackPost.job_id == job_id, SlackPost.state == row.state, SlackPost.claimed_at == row.claimed_at)
                .values(state=PostState.claimed.value, claimed_at=now, channel_id=channel_id, thread_ts=thread_ts)
            )
            return Claim(acquired=taken.rowcount == 1, previous=state, claimed_at=row.claimed_at)

    def mark_posted(self, job_id: str, message_ts: str | None) -> None:
        """Done for good; a reaction has no message of its own, so no ts."""
        self._set(job_id, state=PostState.posted.value, message_ts=message_ts, posted_at=time.time(), error=None)

    def mark_failed(self, job_id: str, error: str) -> None:
        self._set(job_id, state=PostState.failed.value, error=error)

    def _set(self, job_id: str, **values: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(SlackPost).where(SlackPost.job_id == job_id).values(**values))

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))
