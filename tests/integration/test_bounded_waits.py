"""A database that silently stops answering: Slack's ack gets a 503 within its 3 s, nothing is lost, and the
probes leave no thread behind per call."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.engine import make_url

from ingest.main import build_app
from tests.support.chaos import ServiceProxy
from tests.support.ingest_settings import ingest_settings
from tests.support.servers import wait_until

LINK = "https://arxiv.org/abs/2106.09685"


@pytest.fixture
def proxy() -> Iterator[ServiceProxy]:
    proxied = ServiceProxy()
    yield proxied
    proxied.close()


def _signed(body: bytes, retry: int | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier("s").generate_signature(timestamp=timestamp, body=body)
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    return headers | ({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_error"} if retry else {})


def test_a_database_that_stops_answering_costs_a_503_within_the_ack_and_loses_nothing(
    postgres_url: str, proxy: ServiceProxy, tmp_path: Path
) -> None:
    database = make_url(postgres_url)
    proxy.route_to(database.port or 5432)
    through_proxy = database.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = ingest_settings(tmp_path, JOB_STORE_DATABASE_URL=through_proxy, ACK_STORE_TIMEOUT_SECONDS=1.0)
    event = {"type": "message", "channel": "C1", "ts": "7.0", "user": "U1", "text": f"<{LINK}>"}
    body = json.dumps({"type": "event_callback", "event_id": "Ev7", "event": event}).encode()
    with TestClient(build_app(settings)) as client:
        proxy.freeze()  # every connection stays open, nothing crosses it: the database seems to hang
        started = time.monotonic()
        first = client.post("/slack/events", content=body, headers=_signed(body))
        assert first.status_code == 503, first.text
        assert time.monotonic() - started < 2.5  # inside Slack's 3 s, so Slack retries rather than disabling the app
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["job_store"].startswith("no answer within")
        again = client.get("/readyz").json()["checks"]["job_store"]
        assert "has not finished" in again  # the stuck ping is not joined by another thread
        proxy.thaw()
        # Slack's redelivery, and the first delivery's insert finishing late in its thread: one job.
        redelivered = client.post("/slack/events", content=body, headers=_signed(body, retry=1))
        assert redelivered.status_code == 200, redelivered.text
        token = {"Authorization": "Bearer x"}

        def jobs() -> list[dict[str, object]]:
            return client.get("/v1/jobs", headers=token, params={"message_ts": "7.0"}).json()["jobs"]

        wait_until(lambda: client.get("/readyz").status_code == 200, 30, 0.05, "readiness once the database answers")
        assert [job["url"] for job in jobs()] == [LINK]
