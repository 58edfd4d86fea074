"""Daily USD budgets per persona and overall, on spend shared by every replica through the database."""

import asyncio
import contextlib
import datetime as dt
import logging
from collections import defaultdict

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from llm_gateway.errors import NO_RETRY_HEADERS, GatewayError
from llm_gateway.metrics import LLM_BUDGET_REFUSALS, LLM_SPEND_TODAY, BoundedLabel
from technoshare_common.db import DEFAULT_TIMEOUTS, DatabaseTimeouts, create_tables, make_engine

log = logging.getLogger(__name__)

metadata = MetaData()
spend_table = Table(
    "llm_spend",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("persona", String(80), primary_key=True),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("calls", Integer, nullable=False, default=0),
)


def utc_day() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


class BudgetExceeded(GatewayError):
    def __init__(self, scope: str, limit: float, spent: float) -> None:
        super().__init__(
            429,
            f"the {scope} daily LLM budget of ${limit:.2f} is reached (spent ${spent:.4f} today); "
            "it resets at 00:00 UTC, or raise it in LLM_BUDGET_USD_PER_DAY / LLM_PERSONA_BUDGETS_USD_PER_DAY",
            "insufficient_quota",
            code="budget_exceeded",
            headers=NO_RETRY_HEADERS,
            status_label="budget_exceeded",
        )


class SpendLedger:
    """Spend is added in memory on the hot path and synced to the database in the background.

    Replicas see each other's spend within one sync interval, so a budget can be overshot by
    what the replicas spend in that interval; budgets are a brake, not an invoice.
    """

    def __init__(
        self,
        *,
        global_limit: float | None,
        persona_limits: dict[str, float],
        database_url: str | None,
        sync_seconds: float,
        timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS,
        persona_label: BoundedLabel,
    ) -> None:
        self.global_limit = global_limit
        self.persona_limits = persona_limits
        self.sync_seconds = sync_seconds
        self._engine = make_engine(database_url, timeouts) if database_url else None
        if self._engine is not None:
            create_tables(self._engine, metadata)
        self._persona_label = persona_label
        self._day = utc_day()
        self._synced: dict[str, float] = defaultdict(float)
        self._pending: dict[str, float] = defaultdict(float)
        self._pending_calls: dict[str, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()

    @property
    def has_limits(self) -> bool:
        return self.global_limit is not None or bool(self.persona_limits)

    def spent(self, persona: str | None = None) -> float:
        self._roll_day()
        if persona is None:
            return sum(self._synced.values()) + sum(self._pending.values())
        return self._synced.get(persona, 0.0) + self._pending.get(persona, 0.0)

    def headroom(self, persona: str) -> float | None:
        """USD left under the tightest budget that applies to the persona; None when none does."""
        left = []
        if (limit := self.persona_limits.get(persona)) is not None:
            left.append(limit - self.spent(persona))
        if self.global_limit is not None:
            left.append(self.global_limit - self.spent())
        return min(left) if left else None

    def check(self, persona: str, estimated_cost: float) -> None:
        """Refuse a call that would start over a budget (its prompt cost estimated before the call)."""
        limit = self.persona_limits.get(persona)
        if limit is not None and self.spent(persona) + estimated_cost > limit:
            LLM_BUDGET_REFUSALS.labels(self._persona_label(persona), "persona").inc()
            raise BudgetExceeded(f"'{persona}'", limit, self.spent(persona))
        if self.global_limit is not None and self.spent() + estimated_cost > self.global_limit:
            LLM_BUDGET_REFUSALS.labels(self._persona_label(persona), "global").inc()
            raise BudgetExceeded("global", self.global_limit, self.spent())

    def add(self, persona: str, cost_usd: float) -> None:
        self._roll_day()
        self._pending[persona] += cost_usd
        self._pending_calls[persona] += 1
        LLM_SPEND_TODAY.labels(self._persona_label(persona)).set(self.spent(persona))

    def _roll_day(self) -> None:
        today = utc_day()
        if today != self._day:
            self._day = today
            self._synced.clear()
            self._pending.clear()
            self._pending_calls.clear()

    async def sync(self) -> None:
        """Write this replica's pending spend and read everybody's totals for today."""
        if self._engine is None:
            return
        async with self._sync_lock:
            self._roll_day()
            day, pending, calls = self._day, dict(self._pending), dict(self._pending_calls)
            totals = await asyncio.to_thread(self._write_and_read, day, pending, calls)
            if day != self._day:
                return
            # Applied on the event loop, which alone changes the in-memory counters.
            for persona, cost in pending.items():
                self._pending[persona] -= cost
                self._pending_calls[persona] -= calls.get(persona, 0)
            self._synced = defaultdict(float, totals)

    def _write_and_read(self, day: str, pending: dict[str, float], calls: dict[str, int]) -> dict[str, float]:
        assert self._engine is not None
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        with self._engine.begin() as connection:
            for persona, cost in pending.items():
                statement = insert(spend_table).values(
                    day=day, persona=persona, cost_usd=cost, calls=calls.get(persona, 0)
                )
                connection.execute(
                    statement.on_conflict_do_update(
                        index_elements=["day", "persona"],
                        set_={
                            "cost_usd": spend_table.c.cost_usd + statement.excluded.cost_usd,
                            "calls": spend_table.c.calls + statement.excluded.calls,
                        },
                    )
                )
            rows = connection.execute(
                select(spend_table.c.persona, func.sum(spend_table.c.cost_usd))
                .where(spend_table.c.day == day)
                .group_by(spend_table.c.persona)
            ).all()
        return {persona: float(total or 0.0) for persona, total in rows}

    async def _sync_forever(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:
                log.exception("could not sync LLM spend with the database; budgets use this replica's view")
            await asyncio.sleep(self.sync_seconds)

    def start(self) -> None:
        if self._engine is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sync_forever())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._engine is not None:
            await self.sync()
            self._engine.dispose()
