"""Chaos under load: while Slack sends a steady stream of events, ingest, composer and poster are SIGKILLed in turn
and the database drops every connection; every accepted event still ends as exactly one reply or an outcome."""

from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from tests.support.chaos import SlackTraffic, finish, reply_count, wait_ready
from tests.support.servers import wait_until
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

RATE = 4  # events a second while the blows fall, for SECONDS at most: more than 2 busy cores answer
SECONDS = 45


def test_no_event_is_lost_or_answered_twice_through_kills_and_a_database_outage(
    tmp_path: Path, postgres_url: str, postgres_server_url: str
) -> None:
    env = {
        "JOB_STORE_DATABASE_URL": postgres_url,
        "POSTER_DATABASE_URL": postgres_url,
        "DISPATCH_CONCURRENCY": "8",
        "JOB_LEASE_SECONDS": "6",  # a killed ingest's jobs move on within 6 s
        "JOB_RETRY_WINDOW_SECONDS": "3600",  # composer or poster down for a while must not exhaust a job
        "JOB_RETRY_MAX_SECONDS": "2",
        "DISPATCH_BACKOFF_MAX_SECONDS": "2",
        "POST_CLAIM_STALE_SECONDS": "5",  # a post interrupted by poster's kill is checked in Slack after 5 s
    }
    with Stack(tmp_path, env=env) as stack:
        traffic = SlackTraffic(stack, rate=RATE, seconds=SECONDS)
        traffic.start()

        def after_more_replies(count: int, what: str) -> None:
            """Jobs are flowing end to end (and others are in flight) before the next blow."""
            target = reply_count(stack) + count
            wait_until(lambda: reply_count(stack) >= target, timeout=120, interval=0.2, what=f"{count} replies {what}")

        # ingest dies while Slack's events keep coming: some are refused, and Slack delivers them again.
        wait_until(lambda: traffic.sent() >= 4 * RATE, timeout=60, what="Slack's first events")
        for name in ("ingest", "composer", "poster"):
            if name != "ingest":
                after_more_replies(3, f"before {name} is killed")
            service = stack.services[name]
            service.kill()
            service.start(wait=False)
            wait_ready(service)
        after_more_replies(3, "before the database drops its connections")
        terminated = terminate_backends(postgres_server_url, postgres_url)
        assert terminated > 0  # the stack's pools held connections, and lost them all
        _, result = finish(stack, traffic, postgres_url)
    print(f"chaos: {result.summary()} duplicates_sent={traffic.duplicates} refused={traffic.refused_deliveries}")
    assert result.accepted == result.events, result.summary()  # Slack's retries got every event in
    assert result.lost == [] and result.doubled == [], result.summary()
    assert result.replies == result.outcomes.get("success", 0), result.summary()


def terminate_backends(server_url: str, database_url: str) -> int:
    """pg_terminate_backend on every connection to the stack's database, as a failover or a restart would."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": make_url(database_url).database},
                ).all()
            )
    finally:
        admin.dispose()
