"""A paper's body from arXiv's HTML full text (LaTeXML): section headings and paragraphs in reading order.

Only the article is read (`<article>` or `.ltx_page_content`), without its title, authors and abstract (the API
gives those), bibliography, figures, tables, captions, footnotes, equations, code listings, appendices or the
page's navigation. Inline math becomes its TeX source when that is plain text ("r", "d = 4096"); a sentence
holding any other formula is left out, since it would read as a broken sentence without it.
"""

import re
from html.parser import HTMLParser

from retrieval.evidence import Section, group_sections, tidy
from technoshare_common.text import split_sentences

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
_SKIPPED_TAGS = frozenset(
    {
        "aside", "button", "figcaption", "figure", "footer", "form", "header", "iframe", "nav", "noscript",
        "object", "pre", "script", "select", "style", "svg", "table", "template",
    }
)  # fmt: skip
_SKIPPED_CLASSES = frozenset(
    {
        "ltx_abstract", "ltx_acknowledgements", "ltx_algorithm", "ltx_appendix", "ltx_authors",
        "ltx_bibliography", "ltx_biblist", "ltx_caption", "ltx_classification", "ltx_dates", "ltx_equation",
        "ltx_equationgroup", "ltx_ERROR", "ltx_figure", "ltx_float", "ltx_keywords", "ltx_listing", "ltx_note",
        "ltx_page_footer", "ltx_page_header", "ltx_page_logo", "ltx_page_navbar", "ltx_pagination", "ltx_proof",
        "ltx_table", "ltx_tabular", "ltx_tag", "ltx_theorem", "ltx_title_document", "ltx_TOC", "package-alerts",
        "sr-only",
    }
)  # fmt: skip
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_PLAIN_MATH = re.compile(r"^[A-Za-z0-9 .,:;=<>+\-/()|]{1,30}$")
_NUMERIC_CITATION = re.compile(r"\s*\[\d+(?:\s*[,\u2013-]\s*\d+)*\]")
_GAP = "\ue000"  # where a formula was: its sentence is dropped


class _LaTeXMLParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, str]] = []  # (tag, role): root, skip, block, item, other
        self.in_article = 0
        self.skipping = 0
        self.block: list[str] | None = None
        self.block_kind = ""
        self.blocks: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br" and self.block is not None and not self.skipping:
                self.block.append(" ")
            return
        values = dict(attrs)
        classes = set((values.get("class") or "").split())
        self.open.append((tag, self._role(tag, classes, values)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def _role(self, tag: str, classes: set[str], attrs: dict[str, str | None]) -> str:
        if self.skipping:
            self.skipping += 1
            return "skip"
        if tag == "article" or "ltx_page_content" in classes:
            self.in_article += 1
            return "root"
        if not self.in_article:
            return "other"
        if tag == "math" or "ltx_Math" in classes:
            alttext = " ".join((attrs.get("alttext") or "").split())
            inline = attrs.get("display") != "block" and _PLAIN_MATH.match(alttext)
            self._text(alttext if inline else _GAP)
            self.skipping += 1
            return "skip"
        if tag in _SKIPPED_TAGS or classes & _SKIPPED_CLASSES:
            if classes & {"ltx_equation", "ltx_equationgroup"}:
                self._text(_GAP)
            self.skipping += 1
            return "skip"
        if self.block is None and (tag in _HEADINGS or tag == "p" or "ltx_para" in classes):
            self.block, self.block_kind = [], "heading" if tag in _HEADINGS else "paragraph"
            return "block"
        if tag == "li" and self.block is not None:
            self._finish_block(keep_open=True)  # a list item is a paragraph of its own
            return "item"
        if tag == "p":
            self._text(" ")
        return "other"

    def handle_endtag(self, tag: str) -> None:
        if not any(t == tag for t, _ in self.open):
            return  # a stray end tag
        while self.open:
            opened, role = self.open.pop()
            if role == "skip":
                self.skipping -= 1
            elif role == "root":
                self.in_article -= 1
            elif role == "block":
                self._finish_block()
            elif role == "item":
                self._finish_block(keep_open=True)
            if opened == tag:
                return

    def handle_data(self, data: str) -> None:
        self._text(data)

    def _text(self, text: str) -> None:
        if self.block is not None and not self.skipping:
            self.block.append(text)

    def _finish_block(self, keep_open: bool = False) -> None:
        text = _NUMERIC_CITATION.sub("", tidy("".join(self.block or [])))
        if self.block_kind == "heading":
            text = tidy(text.replace(_GAP, " "))
        else:
            text = " ".join(s for s in split_sentences(text) if _GAP not in s)
            text = re.sub(r"\(\s*\)", "", tidy(text))
        if text:
            self.blocks.append((self.block_kind, text))
        self.block = [] if keep_open else None


def latexml_sections(page: str) -> list[Section]:
    """The body of an arXiv HTML paper as sections; none when the page holds no LaTeXML article."""
    parser = _LaTeXMLParser()
    parser.feed(page)
    parser.close()
    return group_sections(parser.blocks)
