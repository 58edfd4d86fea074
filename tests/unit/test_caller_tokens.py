"""Each caller has its own token and each route serves only the callers it needs: a compromised pod's token opens
nothing else (poster's replies only for composer, checkpoint writes only for composer, and so on)."""

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ingest.main import build_app as build_ingest
from poster.main import build_app as build_poster
from poster.settings import PosterSettings
from tests.support.ingest_settings import ingest_settings

TOKENS = {"ingest": "tok-ingest", "composer": "tok-composer", "eval": "tok-eval", "operator": "tok-operator"}
RETRIEVALS_OWN = "tok-retrieval"  # what a compromised retrieval pod holds: no service accepts it
REPLY = {
    "job_id": "j1",
    "channel_id": "C1",
    "thread_ts": "1.0",
    "source_url": "https://x.example",
    "reply": {"tldr": ["One."], "summary": ["Two."], "projects": []},
}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def poster(tmp_path: Path) -> TestClient:  # type: ignore[misc]
    settings = PosterSettings(
        POSTER_DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}",
        TECHNOSHARE_INTERNAL_TOKEN="tok-poster",
        TECHNOSHARE_CALLER_TOKENS={"composer": TOKENS["composer"]},
    )
    with TestClient(build_poster(settings)) as client:
        yield client


def test_poster_posts_for_composer_only(poster: TestClient) -> None:
    assert poster.post("/v1/replies", json=REPLY, headers=bearer(TOKENS["composer"])).status_code == 200
    assert poster.post("/v1/replies", json=REPLY, headers=bearer(RETRIEVALS_OWN)).status_code == 401
    assert poster.post("/v1/replies", json=REPLY, headers=bearer("tok-poster")).status_code == 401  # its own
    assert poster.post("/v1/replies", json=REPLY).status_code == 401


def test_a_known_caller_on_a_route_not_meant_for_it_is_forbidden(tmp_path: Path) -> None:
    accepted = {name: TOKENS[name] for name in ("composer", "operator")}
    settings = ingest_settings(tmp_path, TECHNOSHARE_CALLER_TOKENS=accepted)
    with TestClient(build_ingest(settings)) as ingest:
        save = {"evidence": None}
        assert ingest.get("/v1/jobs", headers=bearer(TOKENS["operator"])).status_code == 200
        assert ingest.get("/v1/jobs", headers=bearer(TOKENS["composer"])).status_code == 200
        # Checkpoint writes are composer's alone: an operator's token reads jobs but cannot write a reply to post.
        written = ingest.post("/v1/jobs/nope/checkpoints", json=save, headers=bearer(TOKENS["operator"]))
        assert written.status_code == 403 and "operator may not" in written.text
        assert (
            ingest.post("/v1/jobs/nope/checkpoints", json=save, headers=bearer(TOKENS["composer"])).status_code == 404
        )
        assert ingest.get("/v1/jobs", headers=bearer(TOKENS["ingest"])).status_code == 401  # not accepted here


def test_without_caller_tokens_the_shared_token_opens_every_route(tmp_path: Path) -> None:
    settings = PosterSettings(POSTER_DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}", TECHNOSHARE_INTERNAL_TOKEN="shared")
    with TestClient(build_poster(settings)) as poster:
        assert poster.post("/v1/replies", json=REPLY, headers=bearer("shared")).status_code == 200
        assert poster.post("/v1/replies", json=REPLY, headers=bearer("other")).status_code == 401


def test_a_service_given_only_a_callers_hash_checks_its_token(tmp_path: Path) -> None:
    """The chart gives callees `sha256:` of their callers' tokens: they can check them, never present them."""
    digest = hashlib.sha256(TOKENS["composer"].encode()).hexdigest()
    settings = PosterSettings(
        POSTER_DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}", TECHNOSHARE_CALLER_TOKENS={"composer": f"sha256:{digest}"}
    )
    with TestClient(build_poster(settings)) as poster:
        assert poster.post("/v1/replies", json=REPLY, headers=bearer(TOKENS["composer"])).status_code == 200
        assert poster.post("/v1/replies", json=REPLY, headers=bearer(f"sha256:{digest}")).status_code == 401
