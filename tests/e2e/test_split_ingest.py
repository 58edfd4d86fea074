"""ingest as the chart runs it: an acks process (INGEST_ROLE=acks) and a dispatcher process (INGEST_ROLE=dispatch)
on one job store. A link and Slack's retry of it still make exactly one reply in the thread."""

from pathlib import Path

import httpx
import pytest

from tests.support.stack import CHANNEL, Stack

pytestmark = pytest.mark.e2e

ARXIV = "https://arxiv.org/abs/2106.09685"


def test_acks_and_dispatch_apart_answer_a_link_once(tmp_path: Path) -> None:
    with Stack(tmp_path, split_ingest=True) as stack:
        event = stack.message_event(f"<{ARXIV}>")
        ts = event["event"]["ts"]
        assert stack.slack_request(event).status_code == 200
        retry = {"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}
        assert stack.slack_request(event, headers=retry).status_code == 200
        [job] = stack.wait_jobs_done(ts, 1)
        assert job["outcome"] == "success", job
        token = {"authorization": f"Bearer {stack.token}"}
        # Composer wrote its checkpoints to the job API the dispatcher serves: the job shows its stages.
        stored = httpx.get(f"{stack.jobs_url}/v1/jobs/{job['id']}", headers=token, timeout=10).json()
        assert stored["checkpoints"]["evidence"] and stored["checkpoints"]["stage_b"], stored
        assert [reply["ts"] for reply in stack.slack.replies_in(CHANNEL, ts)] == [job["slack_message_ts"]]
        # The acks process has neither the job API nor a dispatcher; the dispatcher has no Slack endpoint.
        assert httpx.get(f"{stack.ingest_url}/v1/jobs", headers=token, timeout=10).status_code == 404
        assert httpx.post(f"{stack.jobs_url}/slack/events", timeout=10).status_code == 404
