"""Which jobs have been posted: the record that makes posting idempotent per job.

Each claim carries a token, and every later state change names it: an attempt whose claim was taken over (it ran
past POST_CLAIM_STALE_SECONDS) can no longer overwrite what the attempt that took over recorded."""

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Float, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from technoshare_common.db import DEFAULT_TIMEOUTS, DatabaseTimeouts, add_missing_columns, create_tables, make_engine


class PostState(StrEnum):
    claimed = "claimed"  # an attempt is posting, or died while posting
    posted = "posted"
    failed = "failed"  # Slack refused: nothing was posted
    maybe_posted = "maybe_posted"  # no clear answer (a timeout, a reset, a 5xx): Slack may hold the message


# States after which the message may be in Slack without its ts on record: the thread is searched first.
UNCERTAIN = frozenset({PostState.claimed, PostState.maybe_posted})


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
    claim_token: Mapped[str | None] = mapped_column(String(32))
    posted_at: Mapped[float | None] = mapped_column(Float)
    failed_at: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class Claim:
    """`previous` is the state found before this claim: None for a first attempt. `token` fences this claim's
    later state changes."""

    acquired: bool
    previous: PostState | None
    message_ts: str | None = None
    token: str = ""
    settling: bool = False  # not acquired: an unclear post is too recent to search the thread for


class PostStore:
    def __init__(self, database_url: str, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS) -> None:
        self.engine = make_engine(database_url, timeouts)

    def create_schema(self) -> None:
        create_tables(self.engine, Base.metadata)
        table: Table = SlackPost.__table__  # type: ignore[assignment]  # a declarative class's table is a Table
        add_missing_columns(self.engine, table)

    def claim(self, job_id: str, channel_id: str, thread_ts: str, stale_after: float, settle: float = 0.0) -> Claim:
        """`settle`: after a post with no clear answer, how long before the thread is searched for it. Slack may
        still be taking a request the client gave up on; a search too soon would miss it, and post twice."""
        now, token = time.time(), uuid.uuid4().hex
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(SlackPost).values(
                        job_id=job_id,
                        state=PostState.claimed.value,
                        channel_id=channel_id,
                        thread_ts=thread_ts,
                        claimed_at=now,
                        claim_token=token,
                    )
                )
            return Claim(acquired=True, previous=None, token=token)
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            row = conn.execute(select(SlackPost.__table__).where(SlackPost.job_id == job_id)).one()
            state = PostState(row.state)
            if state == PostState.posted:
                return Claim(acquired=False, previous=state, message_ts=row.message_ts)
            if state == PostState.claimed and row.claimed_at > now - stale_after:
                return Claim(acquired=False, previous=state)
            if state == PostState.maybe_posted and (row.failed_at or 0.0) > now - settle:
                return Claim(acquired=False, previous=state, settling=True)
            # A finished attempt, or a claim whose holder died: take it over, unless someone else just did.
            taken = conn.execute(
                update(SlackPost)
                .where(SlackPost.job_id == job_id, SlackPost.state == row.state, SlackPost.claimed_at == row.claimed_at)
                .values(
                    state=PostState.claimed.value,
                    claimed_at=now,
                    claim_token=token,
                    channel_id=channel_id,
                    thread_ts=thread_ts,
                )
            )
            return Claim(acquired=taken.rowcount == 1, previous=state, token=token)

    def mark_posted(self, job_id: str, token: str, message_ts: str | None) -> bool:
        """Done for good (a reaction has no message of its own, so no ts); False when the claim was taken over."""
        return self._set(
            job_id, token, state=PostState.posted.value, message_ts=message_ts, posted_at=time.time(), error=None
        )

    def mark_failed(self, job_id: str, token: str, error: str, maybe_posted: bool) -> bool:
        state = PostState.maybe_posted if maybe_posted else PostState.failed
        return self._set(job_id, token, state=state.value, error=error, failed_at=time.time())

    def _set(self, job_id: str, token: str, **values: object) -> bool:
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(SlackPost).where(SlackPost.job_id == job_id, SlackPost.claim_token == token).values(**values)
            )
        return changed.rowcount == 1

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))
