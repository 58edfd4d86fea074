"""A rolling restart, as a Deployment does it: with jobs flowing, a new ingest starts, becomes ready and takes the
traffic, then the old one gets SIGTERM; then the same for composer. No job waits much longer than usual, and every
job ends exactly once.

Two replicas of a service run side by side on their own ports behind a ServiceProxy (a Kubernetes Service's part):
Slack and composer reach ingest through one, ingest reaches composer through another.
"""

import signal
import statistics
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.chaos import JobRow, ServiceProxy, SlackTraffic, finish, reply_count, wait_ready
from tests.support.servers import ServiceProcess, free_port, wait_until
from tests.support.stack import IngestClient, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]

RATE = 2  # jobs a second, from before the restarts until after them (SECONDS at most)
SECONDS = 300
MAX_DELAY_SECONDS = 60.0


def test_a_rolling_restart_of_ingest_then_composer_delays_no_job_and_answers_each_once(
    tmp_path: Path, postgres_url: str
) -> None:
    ingest_proxy, composer_proxy = ServiceProxy(), ServiceProxy()
    env = {
        "JOB_STORE_DATABASE_URL": postgres_url,
        "INGEST_URL": ingest_proxy.url,
        "COMPOSER_URL": composer_proxy.url,
        "DISPATCH_CONCURRENCY": "16",  # the 1 s each job spends in Stage B is not what limits the flow
        "JOB_RETRY_WINDOW_SECONDS": "600",
        "JOB_RETRY_MAX_SECONDS": "2",
        # A job an old ingest kept instead of giving it back would wait 60 to 90 s for its lease: over the limit.
        "JOB_LEASE_SECONDS": "90",
    }
    with ExitStack() as cleanup, Stack(tmp_path, env=env) as stack:
        cleanup.callback(ingest_proxy.close)
        cleanup.callback(composer_proxy.close)
        ingest_proxy.route_to(stack.services["ingest"].port)
        composer_proxy.route_to(stack.services["composer"].port)
        stack.llm.slow_seconds = 1.0  # every job spends 1 s in Stage B: several are in flight at any moment
        client = IngestClient(ingest_proxy.url, stack.signing_secret, stack.token)
        traffic = SlackTraffic(client, RATE, SECONDS, text="slow-please")
        traffic.start()

        wait_until(lambda: reply_count(stack) >= 20, timeout=90, interval=0.2, what="20 replies before the restart")
        restarted_at = traffic.sent()
        for name, proxy in (("ingest", ingest_proxy), ("composer", composer_proxy)):
            old = stack.services[name]
            new = ServiceProcess(name, free_port(), old.env, tmp_path)
            cleanup.callback(new.stop)
            new.start(wait=False)
            wait_ready(new)
            proxy.route_to(new.port)  # the new pod is ready: the Service sends new connections to it
            old.stop()  # SIGTERM: ingest gives its jobs in flight back, composer finishes its requests
            # Shut down of itself, not SIGKILLed after ServiceProcess.stop's 10 s (uvicorn re-raises the SIGTERM it
            # handled once it has shut down, so -15 is a clean stop).
            assert old.process is not None and old.process.returncode in (0, -signal.SIGTERM), f"{name}: not clean"
            target = reply_count(stack) + 10
            wait_until(
                lambda target=target: reply_count(stack) >= target,
                timeout=90,
                interval=0.2,
                what=f"replies after {name}",
            )
        rows, result = finish(stack, traffic, postgres_url)
    before = {event.ts for event in traffic.events[:restarted_at]}
    usual = statistics.median(latency(row) for row in rows if row.message_ts in before)
    delay = max(latency(row) for row in rows) - usual
    print(f"rolling restart: {result.summary()} usual latency={usual:.2f}s max delay={delay:.2f}s")
    assert result.accepted == result.events and result.lost == [] and result.doubled == [], result.summary()
    assert result.outcomes == {"success": result.jobs} and result.replies == result.jobs, result.summary()
    assert delay <= MAX_DELAY_SECONDS, f"a job took {delay:.1f}s longer than the usual {usual:.1f}s"


def latency(row: JobRow) -> float:
    """Created to finished, both on the database's clock."""
    assert row.finished_at is not None
    return row.finished_at - row.created_at
