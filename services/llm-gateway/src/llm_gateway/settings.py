from typing import Literal

from pydantic import Field, SecretStr

from technoshare_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    upstream_base_url: str = Field("https://api.openai.com/v1", validation_alias="LLM_UPSTREAM_BASE_URL")
    upstream_kind: Literal["openai", "llamacpp"] = Field(
        "openai",
        validation_alias="LLM_UPSTREAM_KIND",
        description="Dialect of the upstream: OpenAI's API, or llama.cpp's OpenAI-compatible server.",
    )
    upstream_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    upstream_timeout_seconds: float = Field(300.0, gt=0, validation_alias="LLM_UPSTREAM_TIMEOUT_SECONDS")
    llamacpp_repeat_penalty: float = Field(1.3, ge=1.0, validation_alias="LLAMACPP_REPEAT_PENALTY")
