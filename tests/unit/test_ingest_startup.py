"""ingest's start readies the ack path before Slack's first event: pooled connections open, startup heap frozen."""

import gc
import time
from pathlib import Path

from fastapi.testclient import TestClient

from ingest.main import build_app
from tests.support.ingest_settings import ingest_settings

ACK_THREADS = 5


def test_startup_opens_a_connection_per_ack_thread_and_freezes_the_startup_heap(tmp_path: Path) -> None:
    app = build_app(ingest_settings(tmp_path, ACK_THREADS=ACK_THREADS))
    with TestClient(app):
        pool = app.state.store.engine.pool
        assert pool.checkedin() + pool.checkedout() >= ACK_THREADS
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # given back at shutdown, so the tests' later apps are collected as usual


def test_more_ack_threads_than_the_pool_keeps_start_at_once(tmp_path: Path) -> None:
    """Warming opens only what the pool keeps: holding more than it allows would wait out the pool's timeout."""
    app = build_app(ingest_settings(tmp_path, ACK_THREADS=40))
    started = time.monotonic()
    with TestClient(app):
        assert time.monotonic() - started < 20
        pool = app.state.store.engine.pool
        assert pool.checkedin() + pool.checkedout() >= pool.size()
