"""composer is SIGKILLed while a job is in Stage B; after a restart the job completes exactly once."""

import time

import pytest

from tests.support.servers import wait_until
from tests.support.stack import CHANNEL, Stack

pytestmark = pytest.mark.e2e


def test_job_survives_a_composer_kill_and_is_answered_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # However long composer takes to come back on a busy machine, the job must not run out of attempts meanwhile.
    with Stack(tmp_path, env={"JOB_RETRY_WINDOW_SECONDS": "600", "JOB_RETRY_MAX_SECONDS": "2"}) as stack:
        stack.llm.slow_seconds = 3.0
        event = stack.message_event("slow-please <https://arxiv.org/abs/2106.09685>")
        ts = event["event"]["ts"]
        assert stack.slack_request(event).status_code == 200

        wait_until(lambda: stack.llm.stage_b_requests() >= 1, timeout=30, what="Stage B to start")
        composer = stack.services["composer"]
        composer.kill()
        [job] = stack.jobs(ts)
        assert job["state"] != "done"

        time.sleep(1.0)  # ingest sees the dropped connection and hands the job back
        composer.start()
        [job] = stack.wait_jobs_done(ts, 1, timeout=60)

        assert job["outcome"] == "success", job
        assert job["attempts"] >= 2
        assert stack.llm.stage_a_requests() == 1  # checkpointed before the kill: not paid for twice
        time.sleep(1.0)
        assert len(stack.slack.replies_in(CHANNEL, ts)) == 1
