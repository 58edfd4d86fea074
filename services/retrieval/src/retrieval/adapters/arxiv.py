"""arXiv papers: title, authors, abstract and categories from the export API (Atom), then the body of the
paper from arXiv's HTML full text when it has one (older papers have none: the abstract alone, coverage partial)."""

import asyncio
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

from defusedxml import ElementTree

from retrieval.adapters.arxiv_html import latexml_sections
from retrieval.adapters.base import AdapterBase
from retrieval.evidence import FULL_TEXT_MIN_CHARS, Section, build_evidence
from retrieval.fetcher import FetchError
from technoshare_common.schemas import Evidence, Snippet, Source

log = logging.getLogger(__name__)

_ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV = "{http://arxiv.org/schemas/atom}"
_ID = re.compile(r"^/(?:abs|pdf|html)/((?:\d{4}\.\d{4,5})|(?:[a-z\-]+(?:\.[A-Z]{2})?/\d{7}))(v\d+)?(?:\.pdf)?/?$")
_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})


@dataclass(frozen=True)
class FullText:
    """What the HTML full text gave: the body's sections (none when unread), the page read, and why."""

    sections: list[Section]
    url: str
    status: str  # "read", "none" (arXiv has no HTML for the paper), "empty", or the fetch's failure kind


@dataclass(frozen=True)
class ArxivEntry:
    arxiv_id: str
    title: str
    abstract: str
    authors: list[str]
    categories: list[str]
    published: str
    abs_url: str
    pdf_url: str


def arxiv_id(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.hostname not in _HOSTS:
        return None
    match = _ID.match(parsed.path)
    return match.group(1) + (match.group(2) or "") if match else None


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def parse_feed(xml: bytes) -> list[ArxivEntry]:
    root = ElementTree.fromstring(xml)
    entries = []
    for entry in root.findall(f"{_ATOM}entry"):
        entry_id = _clean(entry.findtext(f"{_ATOM}id"))
        title = _clean(entry.findtext(f"{_ATOM}title"))
        if not title or title.lower() == "error":
            continue
        identifier = entry_id.rsplit("/abs/", 1)[-1]
        links = {link.get("title") or link.get("rel"): link.get("href", "") for link in entry.findall(f"{_ATOM}link")}
        entries.append(
            ArxivEntry(
                arxiv_id=identifier,
                title=title,
                abstract=_clean(entry.findtext(f"{_ATOM}summary")),
                authors=[_clean(a.findtext(f"{_ATOM}name")) for a in entry.findall(f"{_ATOM}author")],
                categories=[c.get("term", "") for c in entry.findall(f"{_ATOM}category")],
                published=_clean(entry.findtext(f"{_ATOM}published")),
                abs_url=links.get("alternate") or f"https://arxiv.org/abs/{identifier}",
                pdf_url=links.get("pdf") or f"https://arxiv.org/pdf/{identifier}",
            )
        )
    return entries


class ArxivAdapter(AdapterBase):
    name = "ArxivAdapter"

    def matches(self, url: str) -> bool:
        return arxiv_id(url) is not None

    async def _query(self, **params: str) -> list[ArxivEntry]:
        page = await self.fetcher.fetch(f"{self.settings.arxiv_api_url}?{urlencode(params)}")
        try:
            return parse_feed(page.body)
        except ElementTree.ParseError as exc:
            raise FetchError("parse", f"arXiv API answered with invalid Atom: {exc}") from exc

    async def _full_text(self, identifier: str) -> FullText:
        """The paper's body; a failure leaves the abstract alone, it never fails the evidence."""
        url = f"{self.settings.arxiv_html_url.rstrip('/')}/{identifier}"
        try:
            page = await self.fetcher.fetch(url)
        except FetchError as exc:
            if exc.kind != "not_found":
                log.warning("arXiv full text unread", extra={"arxiv_id": identifier, "error": str(exc)})
            return FullText([], url, "none" if exc.kind == "not_found" else exc.kind)
        # A large page takes a while to parse; keep the event loop free for other requests.
        sections = await asyncio.to_thread(latexml_sections, page.text())
        if sum(len(p) for s in sections for p in s.paragraphs) < FULL_TEXT_MIN_CHARS:
            return FullText([], page.url, "empty")
        return FullText(sections, page.url, "read")

    async def evidence(self, url: str) -> Evidence:
        identifier = arxiv_id(url)
        if identifier is None:
            raise FetchError("unsupported", f"{url} is not an arXiv paper link")
        # The full text is read alongside the API call, so a paper costs one fetch's time, not two.
        reading = asyncio.create_task(self._full_text(identifier))
        try:
            entries = await self._query(id_list=identifier, max_results="1")
            if not entries:
                raise FetchError(
                    "not_found", f"arXiv has no paper {identifier}", public=f"arXiv has no paper {identifier}."
                )
        except BaseException:
            reading.cancel()
            raise
        entry = entries[0]
        full_text = await reading
        sources = [Source(url=entry.abs_url, title=entry.title), Source(url=entry.pdf_url, title="PDF")]
        if full_text.sections:
            sources.append(Source(url=full_text.url, title="Full text (HTML)"))
        return build_evidence(
            self.settings,
            url=url,
            final_url=entry.abs_url,
            adapter_name=self.name,
            title=entry.title,
            # The abstract first: the authors' own summary of the paper.
            sections=[Section("Abstract", (entry.abstract,)), *full_text.sections],
            authors=entry.authors,
            sources=sources,
            metadata={
                "arxiv_id": entry.arxiv_id,
                "categories": ", ".join(entry.categories),
                "published": entry.published,
                "authors": ", ".join(entry.authors),
                "full_text": full_text.status,
            },
            partial_by_nature=not full_text.sections,  # the abstract, not the paper
            read_whole=bool(full_text.sections),
        )

    async def search(self, query: str, max_results: int) -> tuple[list[Source], list[Snippet]]:
        entries = await self._query(search_query=f"all:{query}", start="0", max_results=str(max_results))
        sources = [Source(url=e.abs_url, title=e.title, role="search") for e in entries]
        snippets = [
            Snippet(text=f"{e.title}: {e.abstract[: self.settings.snippet_chars]}", source_url=e.abs_url)
            for e in entries
        ]
        return sources, snippets
