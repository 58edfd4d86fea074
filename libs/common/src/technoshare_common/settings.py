"""Settings every service shares, read from the environment with pydantic-settings."""

import os
import tempfile
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from technoshare_common.db import DatabaseTimeouts

# The repository's data/ folder when running from a checkout; images set TECHNOSHARE_DATA_DIR instead.
REPO_DATA_DIR = Path(__file__).resolve().parents[4] / "data"


class ServiceSettings(BaseSettings):
    """Base for each service's settings; names follow the established environment variables."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    # Variables this service no longer reads, old name -> new name. Unknown variables are ignored (extra="ignore"),
    # so a deployment still setting an old name would silently lose its value: startup warns instead.
    renamed_variables: ClassVar[dict[str, str]] = {}

    log_level: str = Field("INFO", validation_alias="LOG_LEVEL", description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    internal_token: SecretStr | None = Field(
        None,
        validation_alias="TECHNOSHARE_INTERNAL_TOKEN",
        description="The bearer token this process presents to the others. Without TECHNOSHARE_CALLER_TOKENS it is "
        "also the one token every service accepts; unset disables the check (local only).",
    )
    caller_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        validation_alias="TECHNOSHARE_CALLER_TOKENS",
        description='JSON: the callers this service accepts and their tokens, e.g. {"composer": "..."}; each route '
        "serves only the callers it names (technoshare_common/auth.py). The chart sets it per service.",
    )
    http_timeout_seconds: float = Field(
        30.0, validation_alias="HTTP_TIMEOUT_SECONDS", description="Timeout of one call to another service."
    )
    http_retries: int = Field(
        2,
        validation_alias="HTTP_RETRIES",
        description="Retries of a call to another service that failed retryably (unreachable, 5xx).",
    )

    ingest_url: str = Field("http://127.0.0.1:3000", validation_alias="INGEST_URL", description="Where ingest answers.")
    retrieval_url: str = Field(
        "http://127.0.0.1:8001", validation_alias="RETRIEVAL_URL", description="Where retrieval answers."
    )
    llm_gateway_url: str = Field(
        "http://127.0.0.1:8002", validation_alias="LLM_GATEWAY_URL", description="Where llm-gateway answers."
    )
    composer_url: str = Field(
        "http://127.0.0.1:8003", validation_alias="COMPOSER_URL", description="Where composer answers."
    )
    poster_url: str = Field("http://127.0.0.1:8004", validation_alias="POSTER_URL", description="Where poster answers.")

    mlflow_tracking_uri: str | None = Field(
        None, validation_alias="MLFLOW_TRACKING_URI", description="The MLflow server; unset turns tracing off."
    )
    mlflow_enable_tracing: bool = Field(
        True, validation_alias="MLFLOW_ENABLE_TRACING", description="false turns tracing off with a URI set."
    )
    mlflow_experiment_name: str = Field(
        "technoshare_commentator",
        validation_alias="MLFLOW_EXPERIMENT_NAME",
        description="The experiment of the traces, job runs and app versions.",
    )
    mlflow_spool_dir: Path = Field(
        Path(tempfile.gettempdir()) / "technoshare-mlflow-spool",
        validation_alias="MLFLOW_SPOOL_DIR",
        description="Runs and traces waiting for MLflow; keep it on a volume so a restart loses nothing.",
    )

    database_connect_timeout_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias="DATABASE_CONNECT_TIMEOUT_SECONDS",
        description="PostgreSQL: the longest a new connection may take to start.",
    )
    database_statement_timeout_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias="DATABASE_STATEMENT_TIMEOUT_SECONDS",
        description="PostgreSQL: the longest one statement may run (statement_timeout), and how long sent data may "
        "go unacknowledged before the connection is dropped (tcp_user_timeout).",
    )

    spool_max_bytes: int = Field(
        800 * 1024 * 1024,
        ge=1024 * 1024,
        validation_alias="SPOOL_MAX_BYTES",
        description="The most MLFLOW_SPOOL_DIR may hold, all its spools together; past it the oldest records are "
        "dropped (technoshare_mlflow_spool_dropped_total). Keep it below the volume's size (the chart's "
        "spool.sizeLimit), or the kubelet evicts the pod with everything on it.",
    )
    spool_keep_rejected_hours: float = Field(
        72.0,
        gt=0,
        validation_alias="SPOOL_KEEP_REJECTED_HOURS",
        description="Records MLflow refused or that no longer parse (*.rejected, *.bad) are deleted after this.",
    )

    def database_timeouts(self) -> DatabaseTimeouts:
        return DatabaseTimeouts(
            connect_seconds=self.database_connect_timeout_seconds,
            statement_seconds=self.database_statement_timeout_seconds,
        )

    def renamed_variables_set(self) -> dict[str, str]:
        """The renamed variables still set in the environment, old name -> the name to use instead."""
        return {old: new for old, new in self.renamed_variables.items() if old in os.environ}

    def caller_token_values(self) -> dict[str, str]:
        return {caller: token.get_secret_value() for caller, token in self.caller_tokens.items()}

    def internal_token_value(self) -> str | None:
        return self.internal_token.get_secret_value() if self.internal_token else None
