"""A renamed variable still set is ignored: each service says so at startup, naming the variable to use."""

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.main import build_app as build_ingest
from ingest.settings import IngestSettings
from llm_gateway.main import build_app as build_gateway
from llm_gateway.settings import GatewaySettings


def startup_warnings(app: FastAPI, capsys: pytest.CaptureFixture[str]) -> list[str]:
    with TestClient(app):
        pass
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [line["message"] for line in lines if line["level"] == "WARNING"]


@pytest.mark.parametrize("old_value_set", [True, False])
def test_ingest_warns_of_job_lease_margin_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], old_value_set: bool
) -> None:
    if old_value_set:
        monkeypatch.setenv("JOB_LEASE_MARGIN_SECONDS", "30")
    settings = IngestSettings(SLACK_SIGNING_SECRET="s", JOB_STORE_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
    warned = [w for w in startup_warnings(build_ingest(settings), capsys) if "JOB_LEASE" in w]
    expected = ["JOB_LEASE_MARGIN_SECONDS is set but no longer read: set JOB_LEASE_SECONDS instead"]
    assert warned == (expected if old_value_set else [])


def test_the_gateway_warns_of_llm_max_retries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_MAX_RETRIES", "3")
    settings = GatewaySettings(LLM_UPSTREAM_BASE_URL="http://127.0.0.1:9/v1", OPENAI_API_KEY="sk-test")
    warned = [w for w in startup_warnings(build_gateway(settings), capsys) if "RETRIES" in w]
    assert warned == ["LLM_MAX_RETRIES is set but no longer read: set LLM_UPSTREAM_MAX_RETRIES instead"]
    assert settings.max_retries == 2  # still ignored: the warning is all it gets
