from pathlib import Path

from pydantic import Field

from technoshare_common.settings import REPO_DATA_DIR, ServiceSettings


class ComposerSettings(ServiceSettings):
    data_dir: Path = Field(REPO_DATA_DIR, validation_alias="TECHNOSHARE_DATA_DIR")
    stage_a_model: str = Field("gpt-4o-mini", validation_alias="STAGE_A_MODEL")
    stage_b_model: str = Field("gpt-4o-mini", validation_alias="STAGE_B_MODEL")
    stage_a_tools: bool = Field(
        True,
        validation_alias="STAGE_A_TOOLS",
        description="Offer Stage A the search tool (needs a tool-calling model).",
    )
    max_tool_calls: int = Field(2, ge=0, le=5, validation_alias="STAGE_A_MAX_TOOL_CALLS")
    evidence_window_chars: int = Field(6000, gt=200, validation_alias="EVIDENCE_WINDOW_CHARS")
    tldr_sentences: int = Field(3, ge=1, validation_alias="GATE_TLDR_SENTENCES")
    summary_min_sentences: int = Field(10, ge=1, validation_alias="GATE_SUMMARY_MIN_SENTENCES")
    summary_max_sentences: int = Field(15, ge=1, validation_alias="GATE_SUMMARY_MAX_SENTENCES")
    repair_attempts: int = Field(1, ge=0, le=3, validation_alias="GATE_REPAIR_ATTEMPTS")
    post_on_gate_failure: bool = Field(False, validation_alias="POST_ON_GATE_FAILURE")
    job_deadline_seconds: float = Field(540.0, gt=0, validation_alias="JOB_DEADLINE_SECONDS")
    llm_timeout_seconds: float = Field(240.0, gt=0, validation_alias="LLM_TIMEOUT_SECONDS")

    prompt_alias: str = Field(
        "prod", validation_alias="PROMPT_ALIAS", description="Registry alias the pipeline loads: prompts:/NAME@ALIAS."
    )
    prompt_cache_ttl_seconds: float = Field(60.0, gt=0, validation_alias="PROMPT_CACHE_TTL_SECONDS")
    mlflow_enable_tracking: bool = Field(True, validation_alias="MLFLOW_ENABLE_TRACKING")

    @property
    def prompts_dir(self) -> Path:
        return self.data_dir / "prompts"

    @property
    def projects_file(self) -> Path:
        return self.data_dir / "projects.yaml"
