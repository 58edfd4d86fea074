"""GitHub repositories through the REST API: metadata, then the README's sections as prose (GITHUB_TOKEN optional)."""

import json
import re
from urllib.parse import urlparse

from retrieval.adapters.base import AdapterBase
from retrieval.evidence import Section, build_evidence, markdown_inline, markdown_sections
from retrieval.fetcher import FetchError
from technoshare_common.schemas import Evidence, Source

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Paths under github.com that are not repositories.
_RESERVED = frozenset({"orgs", "users", "settings", "marketplace", "topics", "collections", "sponsors", "features"})


def repository(url: str) -> tuple[str, str] | None:
    parsed = urlparse(url)
    if parsed.hostname not in ("github.com", "www.github.com"):
        return None
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) < 2 or parts[0] in _RESERVED:
        return None
    owner, repo = parts[0], parts[1].removesuffix(".git")
    if not (_NAME.match(owner) and _NAME.match(repo)):
        return None
    return owner, repo


class GitHubAdapter(AdapterBase):
    name = "GitHubAdapter"

    def matches(self, url: str) -> bool:
        return repository(url) is not None

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"accept": accept, "x-github-api-version": "2022-11-28"}
        if self.settings.github_token:
            headers["authorization"] = f"Bearer {self.settings.github_token.get_secret_value()}"
        return headers

    async def evidence(self, url: str) -> Evidence:
        found = repository(url)
        if found is None:
            raise FetchError("unsupported", f"{url} is not a GitHub repository link")
        owner, repo = found
        api = f"{self.settings.github_api_url.rstrip('/')}/repos/{owner}/{repo}"
        try:
            meta_page = await self.fetcher.fetch(api, headers=self._headers("application/vnd.github+json"))
        except FetchError as exc:
            if exc.kind != "not_found":
                raise
            public = f"GitHub has no public repository {owner}/{repo}."
            raise FetchError("not_found", str(exc), exc.status_code, public=public) from exc
        try:
            meta = json.loads(meta_page.body)
        except ValueError as exc:
            raise FetchError("parse", f"GitHub API answered with invalid JSON for {owner}/{repo}") from exc
        try:
            readme_page = await self.fetcher.fetch(
                f"{api}/readme", headers=self._headers("application/vnd.github.raw+json")
            )
            readme = markdown_sections(readme_page.text())
        except FetchError as exc:
            if exc.status_code != 404:
                raise
            readme = []
        html_url = meta.get("html_url") or f"https://github.com/{owner}/{repo}"
        description = markdown_inline(meta.get("description") or "")
        # A sentence of its own, so that the header's sentences split where they should.
        stated = description if description.endswith((".", "!", "?")) or not description else f"{description}."
        topics = meta.get("topics") or []
        license_name = (meta.get("license") or {}).get("spdx_id") or ""
        full_name = meta.get("full_name", f"{owner}/{repo}")
        header = " ".join(
            part
            for part in (
                f"{full_name}: {stated}" if description else full_name,
                f"Primary language: {meta['language']}." if meta.get("language") else "",
                f"Topics: {', '.join(topics)}." if topics else "",
            )
            if part
        )
        return build_evidence(
            self.settings,
            url=url,
            final_url=html_url,
            adapter_name=self.name,
            title=full_name + (f": {description}" if description else ""),
            sections=[Section("", (header,)), *readme] if readme else [],
            sources=[Source(url=html_url, title=full_name)],
            metadata={
                "stars": str(meta.get("stargazers_count", "")),
                "language": meta.get("language") or "",
                "topics": ", ".join(topics),
                "license": license_name,
                "description": description,
            },
        )
