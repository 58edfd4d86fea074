"""Outages in the release, with links arriving throughout: nothing lost, nothing doubled, no job given up.

The rehearsal routes each Service to ready pods only (tests/rehearsal/routing.py), so these show readiness that
does not cascade: a provider or a peer down leaves every other pod in its Service. Named to run after the other
rehearsal tests: they share the release, and these leave its breaker and poster freshly recovered."""

import dataclasses
import json
import time
from collections.abc import Callable

import httpx

from tests.rehearsal.conftest import SERVICE_PORTS, Rehearsal
from tests.support.chaos import SlackTraffic, Tally, tally, wait_all_done
from tests.support.servers import ROOT

JOBS_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/rehearsal_jobs"
OUTAGE_SECONDS = 180.0
CALM_SECONDS = 20.0  # links arrive before the outage starts and after it ends too
RATE = 0.5  # links a second


def _outage(rehearsal: Rehearsal, begin: Callable[[], None], end: Callable[[], None]) -> tuple[Tally, float]:
    """Slack's traffic through a calm spell, the outage and another calm spell; the tally of what became of it and
    the longest time from a link's event to its job's end."""
    traffic = SlackTraffic(rehearsal.ingest, rate=RATE, seconds=OUTAGE_SECONDS + 2 * CALM_SECONDS, retry_for=60)
    traffic.start()
    time.sleep(CALM_SECONDS)  # the scenario's own timeline, not a wait for a condition
    begin()
    try:
        time.sleep(OUTAGE_SECONDS)
    finally:
        end()
    traffic.wait(timeout=OUTAGE_SECONDS + 3 * CALM_SECONDS)
    ours = {event.ts for event in traffic.events}
    rows = [row for row in wait_all_done(JOBS_DATABASE, traffic, timeout=240) if row.message_ts in ours]
    with rehearsal.slack.lock:
        messages = [m for m in rehearsal.slack.messages if m.get("thread_ts") in ours]
    longest = max((row.finished_at or time.time()) - row.created_at for row in rows) if rows else 0.0
    return tally(traffic, rows, messages), longest


FIGURES = ROOT / ".run" / "rehearsal-outages.jsonl"  # each scenario's figures, for the benchmarks page


def _assert_whole(scenario: str, result: Tally, longest: float) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as figures:
        figures.write(
            json.dumps({"scenario": scenario, **dataclasses.asdict(result), "longest_seconds": longest}) + "\n"
        )
    assert result.accepted == result.events and result.accepted > 0, result.summary()
    assert not result.lost and not result.doubled, (result.lost[:5], result.doubled[:5])
    assert result.outcomes == {"success": result.jobs}, result.summary()


def _gateway_fallbacks() -> float:
    metrics = httpx.get(f"http://127.0.0.1:{SERVICE_PORTS['llm-gateway']}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("technoshare_llm_fallbacks_total{")
    )


def test_a_provider_failing_for_three_minutes_is_answered_by_the_fallback_upstream(rehearsal: Rehearsal) -> None:
    before = len(rehearsal.fallback_llm.requests), _gateway_fallbacks()

    def provider_fails() -> None:
        rehearsal.llm.failing = True

    def provider_back() -> None:
        rehearsal.llm.failing = False

    result, longest = _outage(rehearsal, provider_fails, provider_back)
    _assert_whole("provider_down", result, longest)  # every reply normal (success, not degraded): the fallback
    assert len(rehearsal.fallback_llm.requests) > before[0] and _gateway_fallbacks() > before[1]
    rehearsal.release.check_healthy()


def test_poster_stopped_for_three_minutes_loses_no_reply(rehearsal: Rehearsal) -> None:
    poster = rehearsal.release.container("technoshare-poster")

    def stop_poster() -> None:
        poster.stop(timeout=30)

    def start_poster() -> None:
        poster.start()
        rehearsal.release.wait_ready("technoshare-poster")

    result, longest = _outage(rehearsal, stop_poster, start_poster)
    _assert_whole("poster_down", result, longest)
    rehearsal.release.check_healthy()
