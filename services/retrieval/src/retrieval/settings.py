from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from technoshare_common.settings import ServiceSettings


class RetrievalSettings(ServiceSettings):
    allowed_hosts: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(),
        validation_alias="RETRIEVAL_ALLOWED_HOSTS",
        description="Comma-separated hosts exempt from the address checks (local development and tests only).",
    )
    fetch_max_bytes: int = Field(
        5 * 1024 * 1024, gt=0, validation_alias="FETCH_MAX_BYTES", description="Larger pages are refused."
    )
    fetch_timeout_seconds: float = Field(
        15.0, gt=0, validation_alias="FETCH_TIMEOUT_SECONDS", description="Timeout of one fetch."
    )
    fetch_max_redirects: int = Field(
        5,
        ge=0,
        validation_alias="FETCH_MAX_REDIRECTS",
        description="Redirects followed, each checked like the first URL.",
    )
    user_agent: str = Field(
        "TechnoShareCommentator/0.1 (+https://github.com/technoshare/commentator)",
        validation_alias="FETCH_USER_AGENT",
        description="User-Agent of every fetch.",
    )
    arxiv_api_url: str = Field(
        "https://export.arxiv.org/api/query",
        validation_alias="ARXIV_API_URL",
        description="arXiv's export API (the sample site offline).",
    )
    arxiv_html_url: str = Field(
        "https://arxiv.org/html",
        validation_alias="ARXIV_HTML_URL",
        description="arXiv's HTML full text, read as <url>/<id> after the abstract (the sample site offline).",
    )
    github_api_url: str = Field(
        "https://api.github.com",
        validation_alias="GITHUB_API_URL",
        description="GitHub's REST API (the sample site offline).",
    )
    github_token: SecretStr | None = Field(
        None, validation_alias="GITHUB_TOKEN", description="Raises GitHub's API rate limit."
    )
    max_evidence_chars: int = Field(
        20_000, gt=0, validation_alias="MAX_EVIDENCE_CHARS", description="Evidence text kept per link."
    )
    snippet_chars: int = Field(
        600, gt=50, validation_alias="SNIPPET_CHARS", description="Length of one evidence snippet."
    )
    max_snippets: int = Field(8, ge=1, validation_alias="MAX_SNIPPETS", description="Snippets per piece of evidence.")

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(h.strip().lower() for h in value.split(",") if h.strip())
        return value
