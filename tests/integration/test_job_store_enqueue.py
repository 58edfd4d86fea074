"""Enqueueing on Slack's ack path, on SQLite and on a real PostgreSQL server: a repeat of a link (Slack retries
every event it thinks unanswered) must be cheap and never become a second job, however the repeats race."""

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import event

from ingest.slack_events import SharedLink
from ingest.store import JobStore

LINK = SharedLink("C1", "1700000000.000100", "1700000000.000100", "https://arxiv.org/abs/2106.09685", "<link>")


def test_a_repeat_is_answered_without_a_failed_statement_or_a_rollback(store: JobStore) -> None:
    first, _ = store.enqueue(LINK, "Ev1")
    failures: list[str] = []
    event.listen(store.engine, "handle_error", lambda context: failures.append(repr(context.original_exception)))
    event.listen(store.engine, "rollback", lambda _conn: failures.append("rollback"))

    assert store.enqueue(LINK, "Ev1") == (first, False)
    assert failures == []


def test_racing_repeats_of_a_link_are_one_job_and_all_get_its_id(store: JobStore) -> None:
    start = threading.Barrier(8)

    def enqueue(_: int) -> tuple[str, bool]:
        start.wait()
        return store.enqueue(LINK, "Ev1")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(enqueue, range(8)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert store.count_by_state() == {"queued": 1}
