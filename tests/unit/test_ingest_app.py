"""ingest's app: queue metrics read off the event loop, readiness that includes the dispatcher."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.signature import SignatureVerifier

from ingest.main import build_app
from ingest.slack_events import SharedLink
from ingest.store import JobStore
from technoshare_common.schemas import JobCheckpoints, JobView, StageACheckpoint, StageBCheckpoint
from tests.support.ingest_settings import ingest_settings
from tests.support.jobs import arxiv_job
from tests.support.servers import wait_until


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def loop_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the store's methods called from a thread that runs an event loop (which they would block)."""
    calls: list[str] = []
    for name in ("queue_stats", "count_by_state", "ping", "enqueue", "claim_next"):
        real = getattr(JobStore, name)

        def spy(self: JobStore, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            if on_event_loop():
                calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(JobStore, name, spy)
    return calls


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(build_app(ingest_settings(tmp_path, QUEUE_STATS_SECONDS=0.05))) as test_client:
        yield test_client


def samples(client: TestClient) -> dict[str, float]:
    """Unlabelled samples by name, and the jobs counted in technoshare_jobs_by_state as `jobs`."""
    families = text_string_to_metric_families(client.get("/metrics").text)
    found = [sample for family in families for sample in family.samples]
    by_name = {sample.name: sample.value for sample in found if not sample.labels}
    return by_name | {"jobs": sum(s.value for s in found if s.name == "technoshare_jobs_by_state")}


def test_queue_metrics_come_from_the_store_without_blocking_the_event_loop(
    client: TestClient, loop_calls: list[str]
) -> None:
    store: JobStore = client.app.state.store  # type: ignore[attr-defined]
    store.enqueue(SharedLink("C1", "1.1", "1.1", "https://example.com/a", "<x>"), "Ev1")
    wait_until(lambda: samples(client)["jobs"] == 1, what="the queue figures")  # queued, or handed off by now
    assert {"technoshare_jobs_due", "technoshare_jobs_oldest_due_age_seconds"} <= samples(client).keys()
    assert loop_calls == []


def test_readiness_includes_the_dispatcher(client: TestClient) -> None:
    checks = client.get("/readyz").json()["checks"]
    assert checks["dispatcher"] == "ok"


def test_composer_checkpoints_show_on_the_job(client: TestClient) -> None:
    store: JobStore = client.app.state.store  # type: ignore[attr-defined]
    job_id, _ = store.enqueue(SharedLink("C1", "1.1", "1.1", "https://example.com/a", "<x>"), "Ev1")
    evidence = arxiv_job(job_id)[1].evidence
    assert evidence is not None
    body = JobCheckpoints(evidence=evidence).model_dump(mode="json", exclude_none=True)
    saved = client.post(f"/v1/jobs/{job_id}/checkpoints", json=body)
    assert saved.status_code == 200 and saved.json()["stages"] == ["evidence"]
    assert client.post("/v1/jobs/nope/checkpoints", json=body).status_code == 404
    view = JobView.model_validate(client.get(f"/v1/jobs/{job_id}").json())
    assert view.checkpoints.evidence == evidence


def test_checkpoints_of_a_stale_attempt_are_refused_and_the_current_attempt_s_round_trip(client: TestClient) -> None:
    client.portal.call(client.app.state.dispatcher.stop)  # type: ignore[attr-defined]  (the test dispatches)
    store: JobStore = client.app.state.store  # type: ignore[attr-defined]
    job_id, _ = store.enqueue(SharedLink("C1", "1.1", "1.1", "https://example.com/a", "<x>"), "Ev1")
    given_back = store.claim_next(lease_seconds=60)
    assert given_back is not None and store.abandon(given_back)
    current = store.claim_next(lease_seconds=60)
    assert current is not None
    _, result = arxiv_job(job_id)
    assert result.evidence is not None and result.facts is not None
    every_stage = JobCheckpoints(
        evidence=result.evidence,
        stage_a=StageACheckpoint(facts=result.facts, usage=result.usage, model="gpt-4o-mini", tool_calls=1),
        stage_b=StageBCheckpoint(
            content='{"tldr": []}', usage=result.usage, model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        ),
        composed=result.model_copy(update={"evidence": None, "post": None, "app_version": "v3", "trace_id": "t1"}),
    )

    def save(attempt: int) -> Any:
        body = every_stage.model_copy(update={"attempt": attempt}).model_dump(mode="json", exclude_none=True)
        return client.post(f"/v1/jobs/{job_id}/checkpoints", json=body)

    refused = save(given_back.claim)
    assert refused.status_code == 409, refused.text
    saved = save(current.claim)
    assert saved.status_code == 200 and saved.json()["stages"] == ["evidence", "stage_a", "stage_b", "composed"]
    view = JobView.model_validate(client.get(f"/v1/jobs/{job_id}").json())
    assert view.checkpoints == every_stage  # every field, nested ones too; the attempt is not kept
    assert store.release(current, "composer died", retry_in=0)
    again = store.claim_next(lease_seconds=60)
    assert again is not None and again.checkpoints == every_stage


def test_a_body_over_the_cap_is_refused_before_it_is_read_whole(client: TestClient) -> None:
    cap = client.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    declared = client.post("/slack/events", content=b"x" * (2 * 1024 * 1024))
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(64):
            yield b"x" * 16384

    assert client.post("/slack/events", content=chunks()).status_code == 413
    assert cap < 64 * 16384
    assert client.post("/slack/events", content=b"{}").status_code == 401  # under the cap: on to the signature


@pytest.mark.parametrize("timestamp", ["abc", "1.5", "-1", "1e9", "0x10"])
def test_a_timestamp_that_is_not_a_number_is_a_401_not_a_server_error(client: TestClient, timestamp: str) -> None:
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=" + "0" * 64}
    assert client.post("/slack/events", content=b"{}", headers=headers).status_code == 401


def test_a_message_with_a_link_that_cannot_be_fetched_still_gets_its_other_links_answered(client: TestClient) -> None:
    text = "<http://example.com:99999/x> <https://x.example/" + "a" * 3000 + "> <https://good.example/paper>"
    event = {"type": "message", "channel": "C1", "ts": "5.0", "user": "U1", "text": text}
    body = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": event}).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier("s").generate_signature(timestamp=timestamp, body=body)
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    before = samples(client).get("technoshare_links_refused_total", 0.0)
    response = client.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    jobs = client.get("/v1/jobs", headers={"Authorization": "Bearer x"}).json()["jobs"]
    # The refused links are jobs too (they get the unreadable notice), kept to the store's length.
    assert sorted(job["url"] for job in jobs) == sorted(
        ["https://good.example/paper", "http://example.com:99999/x", ("https://x.example/" + "a" * 3000)[:2048]]
    )
    assert samples(client)["technoshare_links_refused_total"] == before + 2
    assert client.post("/slack/events", content=body, headers=headers).status_code == 200  # Slack's retry
    assert len(client.get("/v1/jobs", headers={"Authorization": "Bearer x"}).json()["jobs"]) == 3
    assert samples(client)["technoshare_links_refused_total"] == before + 2


def _signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier("s").generate_signature(timestamp=timestamp, body=body)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def test_an_acks_only_ingest_stores_slacks_events_and_leaves_the_work_to_the_dispatcher(tmp_path: Path) -> None:
    """INGEST_ROLE=acks (the chart's `ingest`): no dispatcher, no job API; an event is stored as a queued job for the
    dispatcher process to claim."""
    settings = ingest_settings(tmp_path, INGEST_ROLE="acks", QUEUE_STATS_SECONDS=0.05)
    with TestClient(build_app(settings)) as acks:
        assert acks.app.state.dispatcher is None  # type: ignore[attr-defined]
        ready = acks.get("/readyz").json()
        assert ready == {"ready": True, "checks": {"job_store": "ok"}}
        event = {"type": "message", "channel": "C1", "ts": "7.0", "user": "U1", "text": "<https://good.example/a>"}
        body = json.dumps({"type": "event_callback", "event_id": "Ev7", "event": event}).encode()
        assert acks.post("/slack/events", content=body, headers=_signed(body)).status_code == 200
        assert acks.get("/v1/jobs", headers={"Authorization": "Bearer x"}).status_code == 404
        assert "technoshare_jobs_due" not in samples(acks)  # the queue figures are the dispatcher's to report
    store = JobStore(settings.database_url)
    try:
        assert store.count_by_state() == {"queued": 1}
    finally:
        store.engine.dispose()


def test_a_dispatch_only_ingest_serves_the_job_api_and_no_slack_endpoint(tmp_path: Path) -> None:
    """INGEST_ROLE=dispatch (the chart's `dispatcher`) needs no signing secret: it never sees Slack's requests."""
    settings = ingest_settings(tmp_path, INGEST_ROLE="dispatch", SLACK_SIGNING_SECRET=None)
    with TestClient(build_app(settings)) as dispatch:
        assert dispatch.app.state.dispatcher is not None  # type: ignore[attr-defined]
        assert set(dispatch.get("/readyz").json()["checks"]) == {"job_store", "dispatcher"}
        assert dispatch.post("/slack/events", content=b"{}").status_code == 404
        assert dispatch.get("/v1/jobs", headers={"Authorization": "Bearer x"}).json() == {"jobs": []}


def test_a_role_that_serves_slack_requires_the_signing_secret(tmp_path: Path) -> None:
    for role in ("acks", "all"):
        with pytest.raises(ValueError, match=f"SLACK_SIGNING_SECRET is required with INGEST_ROLE={role}"):
            ingest_settings(tmp_path, INGEST_ROLE=role, SLACK_SIGNING_SECRET=None)
