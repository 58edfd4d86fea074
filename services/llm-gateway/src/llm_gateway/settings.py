"""llm-gateway's configuration: upstreams, routing, resilience, budgets and accounting, all from the environment."""

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from technoshare_common.settings import REPO_DATA_DIR, ServiceSettings

UpstreamKind = Literal["openai", "openai_compatible", "llamacpp"]


class UpstreamConfig(BaseModel):
    """One provider endpoint. Its key is read from the environment variable it names, so it stays a Secret."""

    base_url: str
    kind: UpstreamKind = "openai_compatible"
    api_key_env: str | None = None
    timeout_seconds: float | None = Field(None, gt=0)

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class GatewaySettings(ServiceSettings):
    renamed_variables: ClassVar[dict[str, str]] = {"LLM_MAX_RETRIES": "LLM_UPSTREAM_MAX_RETRIES"}

    data_dir: Path = Field(REPO_DATA_DIR, validation_alias="TECHNOSHARE_DATA_DIR")
    prices_file: Path | None = Field(
        None, validation_alias="LLM_PRICES_FILE", description="Defaults to model_prices.yaml in the data folder."
    )

    # The single-upstream shorthand; LLM_UPSTREAMS/LLM_MODEL_ROUTES below supersede it.
    upstream_base_url: str = Field("https://api.openai.com/v1", validation_alias="LLM_UPSTREAM_BASE_URL")
    upstream_kind: UpstreamKind = Field("openai", validation_alias="LLM_UPSTREAM_KIND")
    upstream_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    upstreams: dict[str, UpstreamConfig] = Field(
        default_factory=dict,
        validation_alias="LLM_UPSTREAMS",
        description='JSON: {"name": {"base_url": ..., "kind": "openai|openai_compatible|llamacpp", "api_key_env": ..}}',
    )
    model_routes: dict[str, str] = Field(
        default_factory=dict,
        validation_alias="LLM_MODEL_ROUTES",
        description='JSON: model name (or "*") -> upstream name; the longest matching name prefix wins.',
    )
    fallback_models: dict[str, list[str]] = Field(
        default_factory=dict,
        validation_alias="LLM_FALLBACK_MODELS",
        description='JSON: model -> models to try in order while it fails, e.g. {"gpt-4o": ["gpt-4o-mini"]}.',
    )

    upstream_timeout_seconds: float = Field(300.0, gt=0, validation_alias="LLM_UPSTREAM_TIMEOUT_SECONDS")
    connect_timeout_seconds: float = Field(5.0, gt=0, validation_alias="LLM_CONNECT_TIMEOUT_SECONDS")
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        validation_alias="LLM_UPSTREAM_MAX_RETRIES",
        description="Retries of one model on its upstream; the gateway is the only layer that retries LLM calls.",
    )
    retry_base_seconds: float = Field(0.5, ge=0, validation_alias="LLM_RETRY_BASE_SECONDS")
    retry_max_seconds: float = Field(20.0, ge=0, validation_alias="LLM_RETRY_MAX_SECONDS")
    retry_after_max_seconds: float = Field(
        60.0, ge=0, validation_alias="LLM_RETRY_AFTER_MAX_SECONDS", description="Longest Retry-After honoured."
    )
    breaker_failure_threshold: int = Field(5, ge=1, validation_alias="LLM_BREAKER_FAILURE_THRESHOLD")
    breaker_reset_seconds: float = Field(30.0, gt=0, validation_alias="LLM_BREAKER_RESET_SECONDS")
    llamacpp_repeat_penalty: float = Field(1.3, ge=1.0, validation_alias="LLAMACPP_REPEAT_PENALTY")

    budget_usd_per_day: float | None = Field(None, ge=0, validation_alias="LLM_BUDGET_USD_PER_DAY")
    persona_budgets_usd_per_day: dict[str, float] = Field(
        default_factory=dict, validation_alias="LLM_PERSONA_BUDGETS_USD_PER_DAY", description='JSON: {"stage_a": 2.5}'
    )
    spend_database_url: str | None = Field(
        None,
        validation_alias="LLM_SPEND_DATABASE_URL",
        description="Where daily spend is kept and shared by replicas; unset keeps it in this process only.",
    )
    spend_sync_seconds: float = Field(1.0, gt=0, validation_alias="LLM_SPEND_SYNC_SECONDS")

    max_label_values: int = Field(
        64, ge=1, validation_alias="LLM_MAX_LABEL_VALUES", description="Distinct models/personas per metric label."
    )
    log_call_runs: bool = Field(
        False,
        validation_alias="LLM_LOG_CALL_RUNS",
        description="Also log an MLflow run per call in experiment {persona}_{YYYY-MM-DD} (does not scale).",
    )

    @model_validator(mode="after")
    def _default_single_upstream(self) -> "GatewaySettings":
        if not self.upstreams:
            self.upstreams = {
                "default": UpstreamConfig(
                    base_url=self.upstream_base_url, kind=self.upstream_kind, api_key_env="OPENAI_API_KEY"
                )
            }
        if not self.model_routes:
            self.model_routes = {"*": next(iter(self.upstreams))}
        unknown = sorted(set(self.model_routes.values()) - set(self.upstreams))
        if unknown:
            raise ValueError(f"LLM_MODEL_ROUTES names upstreams that LLM_UPSTREAMS does not define: {unknown}")
        return self

    @property
    def resolved_prices_file(self) -> Path:
        return self.prices_file or self.data_dir / "model_prices.yaml"

    def api_key_for(self, upstream: UpstreamConfig) -> str | None:
        """The default upstream's key comes from OPENAI_API_KEY, also when given to the constructor in tests."""
        if upstream.api_key_env == "OPENAI_API_KEY" and self.upstream_api_key:
            return self.upstream_api_key.get_secret_value()
        return upstream.api_key()
