"""The five services as processes, wired to a fake Slack, a scripted LLM and the sample site."""

import json
import secrets
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

from scripts import sample_site
from tests.support.fake_slack import VALID_TOKEN, FakeSlack
from tests.support.scripted_llm import ScriptedLLM
from tests.support.servers import ServiceProcess, free_port, serve_in_thread, wait_until

CHANNEL = "C0TESTCHAN"


class IngestClient:
    """Slack's side of ingest (signed events) and an operator's (its jobs), for a Stack's processes or the
    rehearsal's containers."""

    def __init__(self, ingest_url: str, signing_secret: str, token: str, jobs_url: str | None = None) -> None:
        """`jobs_url`: where the job API answers, when acks and dispatch are apart (the chart's dispatcher)."""
        self._ingest_url = ingest_url
        self._jobs_url = jobs_url
        self.signing_secret = signing_secret
        self.token = token

    @property
    def ingest_url(self) -> str:
        return self._ingest_url

    @property
    def jobs_url(self) -> str:
        return self._jobs_url or self.ingest_url

    def slack_request(
        self,
        payload: dict[str, Any],
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        ts = str(timestamp or int(time.time()))
        signature = SignatureVerifier(secret or self.signing_secret).generate_signature(timestamp=ts, body=body)
        return httpx.post(
            f"{self.ingest_url}/slack/events",
            content=body,
            headers={
                "content-type": "application/json",
                "x-slack-request-timestamp": ts,
                "x-slack-signature": signature,
                **(headers or {}),
            },
            timeout=10,
        )

    @staticmethod
    def message_event(text: str, *, ts: str | None = None, event_id: str | None = None, **event: Any) -> dict[str, Any]:
        return {
            "type": "event_callback",
            "team_id": "T0TEST",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:12]}",
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "channel": CHANNEL,
                "user": "U0HUMAN",
                "text": text,
                "ts": ts or f"{time.time():.6f}",
                **event,
            },
        }

    def jobs(self, message_ts: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.jobs_url}/v1/jobs",
            params={"channel_id": CHANNEL, "message_ts": message_ts},
            headers={"authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["jobs"]

    def wait_jobs_done(self, message_ts: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            jobs = self.jobs(message_ts)
            return jobs if len(jobs) == count and all(j["state"] == "done" for j in jobs) else None

        return wait_until(done, timeout=timeout, interval=0.2, what=f"{count} finished job(s) for {message_ts}")


class Stack(IngestClient):
    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        service_env: dict[str, dict[str, str]] | None = None,
        start_timeout: float = 180.0,
        split_ingest: bool = False,
    ) -> None:
        """`env` goes to every service, `service_env` to one each (e.g. {"composer": {"WEB_CONCURRENCY": "2"}});
        `start_timeout` is each service's wait for /healthz (a benchmark on a busy machine needs longer);
        `split_ingest` runs ingest as the chart does: an acks process and a dispatcher process (`dispatcher`)."""
        super().__init__("", secrets.token_hex(16), secrets.token_hex(16))
        self.workdir = workdir
        self.extra_env = env or {}
        self.service_env = service_env or {}
        self.start_timeout = start_timeout
        self.split_ingest = split_ingest
        self.slack = FakeSlack()
        self.llm = ScriptedLLM()
        self._exit = ExitStack()
        self.services: dict[str, ServiceProcess] = {}

    def __enter__(self) -> "Stack":
        slack_url = self._exit.enter_context(serve_in_thread(self.slack.app))
        llm_url = self._exit.enter_context(serve_in_thread(self.llm.app))
        samples_url = self._exit.enter_context(serve_in_thread(sample_site.app))
        names = ["ingest", "retrieval", "llm_gateway", "composer", "poster"] + ["dispatcher"] * self.split_ingest
        ports = {name: free_port() for name in names}
        env = {
            "SLACK_SIGNING_SECRET": self.signing_secret,
            "TECHNOSHARE_INTERNAL_TOKEN": self.token,
            "SLACK_BOT_TOKEN": VALID_TOKEN,
            "SLACK_API_URL": f"{slack_url}/api/",
            "LLM_UPSTREAM_BASE_URL": f"{llm_url}/v1",
            "OPENAI_API_KEY": "sk-test-upstream",
            "STAGE_A_MODEL": "scripted",
            "STAGE_B_MODEL": "scripted",
            "ARXIV_API_URL": f"{samples_url}/arxiv/api/query",
            "ARXIV_HTML_URL": f"{samples_url}/arxiv/html",
            "GITHUB_API_URL": f"{samples_url}/github",
            "RETRIEVAL_ALLOWED_HOSTS": "127.0.0.1",
            "JOB_STORE_DATABASE_URL": f"sqlite:///{self.workdir / 'jobs.db'}",
            "POSTER_DATABASE_URL": f"sqlite:///{self.workdir / 'poster.db'}",
            "DISPATCH_POLL_SECONDS": "0.2",
            "JOB_RETRY_BASE_SECONDS": "0.5",
            # A short retry window, so a link that stays unreachable gets its notice within seconds.
            "JOB_RETRY_WINDOW_SECONDS": "8",
            "JOB_RETRY_MAX_SECONDS": "2",
            "LLM_UPSTREAM_MAX_RETRIES": "0",
            **{f"{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()},
            **self.extra_env,
        }
        roles: dict[str, dict[str, str]] = {}
        if self.split_ingest:  # composer's INGEST_URL is the job API, which the dispatcher serves
            env["INGEST_URL"] = env.pop("DISPATCHER_URL")
            roles = {"ingest": {"INGEST_ROLE": "acks"}, "dispatcher": {"INGEST_ROLE": "dispatch"}}
        self.samples_url = samples_url
        try:
            for name in ("retrieval", "llm_gateway", "poster", "composer", *names[5:], "ingest"):
                module = "ingest" if name == "dispatcher" else name
                service_env = env | roles.get(name, {}) | self.service_env.get(name, {})
                service = ServiceProcess(module, ports[name], service_env, self.workdir, name=name)
                self.services[name] = service
                self._exit.callback(service.stop)
                service.start(wait=False)
                service.wait_healthy(self.start_timeout)
        except BaseException:  # a service that did not come up must not leave the others running
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    @property
    def ingest_url(self) -> str:
        return self.services["ingest"].url

    @property
    def jobs_url(self) -> str:
        return self.services["dispatcher" if self.split_ingest else "ingest"].url
