"""Any other page: main-text extraction with trafilatura."""

import asyncio

import trafilatura

from retrieval.adapters.base import AdapterBase
from retrieval.evidence import build_evidence, markdown_to_text
from technoshare_common.schemas import Evidence, Source

_PLAIN_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})


def extract_main_text(html: str, url: str) -> tuple[str, str]:
    """(title, main text) of an HTML page."""
    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=False, favor_precision=True)
    metadata = trafilatura.extract_metadata(html, default_url=url)
    title = (metadata.title if metadata and metadata.title else "") or ""
    return title, text or ""


class GenericPageAdapter(AdapterBase):
    name = "GenericPageAdapter"

    def matches(self, url: str) -> bool:
        return True

    async def evidence(self, url: str) -> Evidence:
        page = await self.fetcher.fetch(url)
        if page.content_type in _PLAIN_TYPES:
            raw = page.text()
            first_line = raw.strip().splitlines()[0] if raw.strip() else ""
            title, text = first_line.lstrip("# ").strip(), markdown_to_text(raw)
        else:
            # trafilatura is CPU-bound; keep the event loop free for other requests.
            title, text = await asyncio.to_thread(extract_main_text, page.text(), page.url)
        return build_evidence(
            self.settings,
            url=url,
            final_url=page.url,
            adapter_name=self.name,
            title=title,
            text=text,
            sources=[Source(url=page.url, title=title)],
        )
