from pydantic import Field, SecretStr

from technoshare_common.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    slack_signing_secret: SecretStr = Field(validation_alias="SLACK_SIGNING_SECRET")
    channel_id: str | None = Field(
        None, validation_alias="TECHNOSHARE_CHANNEL_ID", description="Only this channel is answered."
    )
    database_url: str = Field("sqlite:///.run/jobs.db", validation_alias="JOB_STORE_DATABASE_URL")
    dispatch_concurrency: int = Field(4, ge=1, validation_alias="DISPATCH_CONCURRENCY")
    dispatch_poll_seconds: float = Field(1.0, gt=0, validation_alias="DISPATCH_POLL_SECONDS")
    composer_timeout_seconds: float = Field(600.0, gt=0, validation_alias="COMPOSER_TIMEOUT_SECONDS")
    lease_margin_seconds: float = Field(60.0, gt=0, validation_alias="JOB_LEASE_MARGIN_SECONDS")
    max_attempts: int = Field(5, ge=1, validation_alias="JOB_MAX_ATTEMPTS")
    retry_base_seconds: float = Field(2.0, gt=0, validation_alias="JOB_RETRY_BASE_SECONDS")
    retry_max_seconds: float = Field(120.0, gt=0, validation_alias="JOB_RETRY_MAX_SECONDS")
    max_links_per_message: int = Field(5, ge=1, validation_alias="MAX_LINKS_PER_MESSAGE")
    feedback_reactions: dict[str, bool] = Field(
        {"+1": True, "thumbsup": True, "white_check_mark": True, "-1": False, "thumbsdown": False, "x": False},
        validation_alias="FEEDBACK_REACTIONS",
        description="JSON: Slack reaction name -> positive (true) or negative (false) feedback on a reply.",
    )

    @property
    def lease_seconds(self) -> float:
        """A claimed job is someone else's to retry once composer's deadline and a margin have passed."""
        return self.composer_timeout_seconds + self.lease_margin_seconds
