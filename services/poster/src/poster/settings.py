from pydantic import Field, SecretStr

from technoshare_common.settings import ServiceSettings


class PosterSettings(ServiceSettings):
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias="SLACK_BOT_TOKEN", description="Unset: dry run, the payload is returned, not posted."
    )
    slack_api_url: str = Field(
        "https://slack.com/api/", validation_alias="SLACK_API_URL", description="Slack's Web API (a fake one in tests)."
    )
    database_url: str = Field(
        "sqlite:///.run/poster.db",
        validation_alias="POSTER_DATABASE_URL",
        description="SQLAlchemy URL of the record of posted replies that makes posting once per job hold.",
    )
    rate_limit_retries: int = Field(
        3,
        ge=0,
        validation_alias="SLACK_RATE_LIMIT_RETRIES",
        description="Waits for Slack's Retry-After before giving up.",
    )
    rate_limit_max_wait_seconds: float = Field(
        10.0,
        ge=0,
        validation_alias="SLACK_RATE_LIMIT_MAX_WAIT_SECONDS",
        description="A longer Retry-After is not waited out: the post fails as retryable and the job retries later.",
    )
    slack_timeout_seconds: float = Field(
        15.0,
        gt=0,
        validation_alias="SLACK_TIMEOUT_SECONDS",
        description="Timeout of one call to Slack. A post that times out may still have been taken: the next "
        "attempt searches the thread for it before posting.",
    )
    settle_seconds: float = Field(
        30.0,
        ge=0,
        validation_alias="POST_SETTLE_SECONDS",
        description="After a post with no clear answer from Slack (a timeout, a reset, a 5xx), how long the next "
        "attempt waits before searching the thread for it: Slack may still be taking the request.",
    )
    claim_stale_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias="POST_CLAIM_STALE_SECONDS",
        description="A post claimed longer ago than this was interrupted; Slack is checked before posting again. "
        "Keep it above a post's longest run (SLACK_TIMEOUT_SECONDS plus the rate-limit waits), or a live attempt "
        "can be taken over.",
    )

    @property
    def dry_run(self) -> bool:
        return self.slack_bot_token is None
