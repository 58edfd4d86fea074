"""Any other page: main-text extraction with trafilatura, kept as headings and prose paragraphs."""

import asyncio
from xml.etree.ElementTree import Element

import trafilatura
from defusedxml import ElementTree

from retrieval.adapters.base import AdapterBase
from retrieval.evidence import Section, build_evidence, group_sections, markdown_sections, tidy, without_lead_in
from technoshare_common.schemas import Evidence, Source

_PLAIN_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
# trafilatura's XML: prose blocks under <main>; <code> there is a code block (inline code sits inside a <p>).
_PROSE = frozenset({"p", "quote"})
_SKIPPED = frozenset({"code", "table", "graphic", "figure"})


def _blocks(element: Element) -> list[tuple[str, str]]:
    """("heading" | "paragraph", text) in reading order; list items are paragraphs of their own."""
    blocks: list[tuple[str, str]] = []
    for child in element:
        if child.tag == "head":
            blocks.append(("heading", tidy("".join(child.itertext()))))
        elif child.tag in _PROSE:
            blocks.append(("paragraph", tidy("".join(child.itertext()))))
        elif child.tag == "item":
            nested = [c for c in child if c.tag == "list"]
            own = (child.text or "") + "".join("".join(c.itertext()) + (c.tail or "") for c in child if c not in nested)
            blocks.append(("paragraph", tidy(own)))
            for inner in nested:
                blocks.extend(_blocks(inner))
        elif child.tag == "code" and blocks and blocks[-1][0] == "paragraph":
            blocks[-1] = ("paragraph", without_lead_in(blocks[-1][1]))
        elif child.tag not in _SKIPPED:
            blocks.extend(_blocks(child))
    return blocks


def extract_main_text(html: str, url: str) -> tuple[str, list[Section]]:
    """(title, sections) of an HTML page: its main text without navigation, footer, code, tables or images."""
    xml = trafilatura.extract(
        html, url=url, output_format="xml", include_comments=False, include_tables=False, favor_precision=True
    )
    metadata = trafilatura.extract_metadata(html, default_url=url)
    title = (metadata.title if metadata and metadata.title else "") or ""
    if not xml:
        return title, []
    main = ElementTree.fromstring(xml).find("main")
    return title, group_sections(_blocks(main) if main is not None else [])


class GenericPageAdapter(AdapterBase):
    name = "GenericPageAdapter"

    def matches(self, url: str) -> bool:
        return True

    async def evidence(self, url: str) -> Evidence:
        page = await self.fetcher.fetch(url)
        if page.content_type in _PLAIN_TYPES:
            raw = page.text()
            first_line = raw.strip().splitlines()[0] if raw.strip() else ""
            title, sections = first_line.lstrip("# ").strip(), markdown_sections(raw)
        else:
            # trafilatura is CPU-bound; keep the event loop free for other requests.
            title, sections = await asyncio.to_thread(extract_main_text, page.text(), page.url)
        return build_evidence(
            self.settings,
            url=url,
            final_url=page.url,
            adapter_name=self.name,
            title=title,
            sections=sections,
            sources=[Source(url=page.url, title=title)],
        )
