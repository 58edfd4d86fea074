from enum import StrEnum
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from ingest.store import DEFAULT_MAX_CLAIMS
from technoshare_common.settings import ServiceSettings


class IngestRole(StrEnum):
    """What one ingest process does. The chart runs `acks` and `dispatch` as two Deployments, so Slack's acks never
    wait behind the work of claiming, handing off and recording jobs (docs/reliability.md, "Acks under load")."""

    acks = "acks"  # POST /slack/events only: verify, store, answer Slack
    dispatch = "dispatch"  # the dispatcher and the job API: claim, hand off to composer, record outcomes
    all = "all"  # both in one process: local runs and small installs


class IngestSettings(ServiceSettings):
    renamed_variables: ClassVar[dict[str, str]] = {
        "JOB_LEASE_MARGIN_SECONDS": "JOB_LEASE_SECONDS",
        "JOB_MAX_ATTEMPTS": "JOB_RETRY_WINDOW_SECONDS",
    }

    role: IngestRole = Field(IngestRole.all, validation_alias="INGEST_ROLE")
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias="SLACK_SIGNING_SECRET", description="Required unless INGEST_ROLE=dispatch."
    )
    channel_id: str | None = Field(
        None, validation_alias="TECHNOSHARE_CHANNEL_ID", description="Only this channel is answered."
    )
    database_url: str = Field("sqlite:///.run/jobs.db", validation_alias="JOB_STORE_DATABASE_URL")
    dispatch_concurrency: int = Field(
        32,
        ge=1,
        validation_alias="DISPATCH_CONCURRENCY",
        description="Jobs this ingest hands to composer at once. A job mostly waits on the LLM, so this divided by "
        "a job's time is the most jobs/s one ingest can finish: 4 capped the stack at 3.6 jobs/s with 0.5 s LLM "
        "calls (docs/benchmarks.md).",
    )
    dispatch_poll_seconds: float = Field(1.0, gt=0, validation_alias="DISPATCH_POLL_SECONDS")
    composer_timeout_seconds: float = Field(600.0, gt=0, validation_alias="COMPOSER_TIMEOUT_SECONDS")
    lease_seconds: float = Field(
        60.0,
        ge=3,
        validation_alias="JOB_LEASE_SECONDS",
        description="A claimed job's lease; a heartbeat renews it every third of it while composer works.",
    )
    dispatch_backoff_max_seconds: float = Field(30.0, gt=0, validation_alias="DISPATCH_BACKOFF_MAX_SECONDS")
    queue_stats_seconds: float = Field(
        5.0, gt=0, validation_alias="QUEUE_STATS_SECONDS", description="How often /metrics' queue figures are read."
    )
    retry_window_seconds: float = Field(
        900.0,
        gt=0,
        validation_alias="JOB_RETRY_WINDOW_SECONDS",
        description="How long after a link arrives its job is still retried after transient failures (a peer or "
        "the provider down). The last attempt inside it is the final one: it answers with the degraded reply or "
        "the unreadable notice, never silence.",
    )
    retry_base_seconds: float = Field(
        2.0, gt=0, validation_alias="JOB_RETRY_BASE_SECONDS", description="The first retry's wait; it doubles."
    )
    retry_max_seconds: float = Field(
        120.0, gt=0, validation_alias="JOB_RETRY_MAX_SECONDS", description="The longest wait between two attempts."
    )
    max_claims: int = Field(
        DEFAULT_MAX_CLAIMS,
        ge=1,
        validation_alias="JOB_MAX_CLAIMS",
        description="A hard cap on hand-offs of one job, whatever ended them (a lease run out, an unexpected error): "
        "a job claimed this often ends `error`. Keep it above the attempts the retry window allows.",
    )
    max_links_per_message: int = Field(5, ge=1, validation_alias="MAX_LINKS_PER_MESSAGE")
    max_body_bytes: int = Field(
        65536,
        ge=1024,
        validation_alias="SLACK_MAX_BODY_BYTES",
        description="Larger Slack requests get 413 before they are read whole (Slack's events are a few KB).",
    )
    ack_threads: int = Field(
        4,
        ge=1,
        validation_alias="ACK_THREADS",
        description="Threads for the database work of acknowledging Slack, apart from the dispatcher's.",
    )
    ack_store_timeout_seconds: float = Field(
        2.0,
        gt=0,
        validation_alias="ACK_STORE_TIMEOUT_SECONDS",
        description="The longest an ack waits for the job store. Past it Slack gets 503 and delivers the event again "
        "(nothing is lost; the store's dedup keeps it one job). Below Slack's 3 s.",
    )
    feedback_reactions: dict[str, bool] = Field(
        {"+1": True, "thumbsup": True, "white_check_mark": True, "-1": False, "thumbsdown": False, "x": False},
        validation_alias="FEEDBACK_REACTIONS",
        description="JSON: Slack reaction name -> positive (true) or negative (false) feedback on a reply.",
    )

    @model_validator(mode="after")
    def _signing_secret_where_slack_is_served(self) -> Self:
        if self.serves_slack and self.slack_signing_secret is None:
            raise ValueError(f"SLACK_SIGNING_SECRET is required with INGEST_ROLE={self.role.value}")
        return self

    def signing_secret(self) -> str:
        if self.slack_signing_secret is None:  # the validator allows that only where Slack is not served
            raise RuntimeError(f"no SLACK_SIGNING_SECRET with INGEST_ROLE={self.role.value}")
        return self.slack_signing_secret.get_secret_value()

    @property
    def serves_slack(self) -> bool:
        return self.role is not IngestRole.dispatch

    @property
    def dispatches(self) -> bool:
        return self.role is not IngestRole.acks
