"""Enqueueing on Slack's ack path, on SQLite and on a real PostgreSQL server: a repeat of a link (Slack retries
every event it thinks unanswered) must be cheap and never become a second job, however the repeats race."""

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import event, text

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


def _link(n: int) -> SharedLink:
    return SharedLink("C1", f"1700000000.{n:06d}", f"1700000000.{n:06d}", f"https://example.com/{n}", "<link>")


def test_a_batch_with_repeats_inside_it_and_links_stored_before_makes_each_job_once(store: JobStore) -> None:
    """The acks' group commit: one batch may hold an event and Slack's retry of it, and links an earlier batch (or
    another replica) stored; racing batches that share links still make each job once."""
    earlier, _ = store.enqueue(_link(1), "Ev1")
    batch = [(_link(1), "Ev1", None), (_link(2), "Ev2", None), (_link(2), "Ev2", None), (_link(3), "Ev3", "malformed")]
    results = store.enqueue_many(batch)
    assert results[0] == (earlier, False)
    assert results[1][1] is True and results[2] == (results[1][0], False)
    assert results[3][1] is True
    with store.engine.connect() as conn:
        problem = conn.execute(text("SELECT link_problem FROM jobs WHERE id = :id"), {"id": results[3][0]}).scalar()
    assert problem == "malformed"

    start = threading.Barrier(4)

    def racing(offset: int) -> list[tuple[str, bool]]:
        start.wait()
        return store.enqueue_many([(_link(n), f"Ev{n}", None) for n in range(10 + offset, 30 + offset)])

    with ThreadPoolExecutor(4) as pool:
        raced = [result for results in pool.map(racing, range(4)) for result in results]
    ids = {}
    for (job_id, _), n in zip(raced, [n for offset in range(4) for n in range(10 + offset, 30 + offset)], strict=True):
        assert ids.setdefault(n, job_id) == job_id
    assert sum(created for _, created in raced) == len(ids) == 23
    assert store.count_by_state() == {"queued": 3 + 23}
