"""Evidence as prose the composer can quote: an arXiv paper's abstract then its HTML full text, a README's
sections and a web page's paragraphs, each without code, markup, math or boilerplate; against local servers."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

from retrieval.service import RetrievalService
from retrieval.settings import RetrievalSettings
from technoshare_common.schemas import Coverage, Evidence
from tests.support.servers import serve_in_thread

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PAPER = "2501.01234"  # has an HTML full text
NO_HTML = "2501.04321"  # arXiv answers 404 for its HTML, as for older papers
HTML_DOWN = "2501.05000"  # the HTML answers 503
ABSTRACT_START = "Question answering over long documents spends most of its time"


def _sources() -> FastAPI:
    app = FastAPI()
    atom = (FIXTURES / "arxiv" / f"{PAPER}.atom.xml").read_text()

    @app.get("/arxiv/api/query")
    def arxiv_query(id_list: str) -> Response:
        return Response(atom.replace(PAPER, id_list.split("v")[0]), media_type="application/atom+xml; charset=utf-8")

    @app.get("/arxiv/html/{identifier}")
    def arxiv_html(identifier: str) -> HTMLResponse:
        if identifier.startswith(PAPER):
            return HTMLResponse((FIXTURES / "arxiv" / f"{PAPER}.html").read_text())
        raise HTTPException(503 if identifier.startswith(HTML_DOWN) else 404)

    @app.get("/github/repos/example/tidewatch")
    def repo() -> Response:
        meta = {
            "full_name": "example/tidewatch",
            "html_url": "https://github.com/example/tidewatch",
            "description": "Flood-tide warnings from harbour pressure sensors :ocean:",
            "language": "Python",
            "topics": ["iot", "sensors"],
            "stargazers_count": 42,
            "license": {"spdx_id": "MIT"},
        }
        return Response(json.dumps(meta), media_type="application/json")

    @app.get("/github/repos/example/tidewatch/readme")
    def readme() -> Response:
        text = (FIXTURES / "github" / "README.md").read_text()
        return Response(text, media_type="application/vnd.github.raw+json; charset=utf-8")

    @app.get("/web/release-notes.html")
    def page() -> HTMLResponse:
        return HTMLResponse((FIXTURES / "web" / "release-notes.html").read_text())

    return app


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_in_thread(_sources()) as url:
        yield url


def _service(site: str, **overrides: str) -> RetrievalService:
    values = {
        "ARXIV_API_URL": f"{site}/arxiv/api/query",
        "ARXIV_HTML_URL": f"{site}/arxiv/html",
        "GITHUB_API_URL": f"{site}/github",
        "RETRIEVAL_ALLOWED_HOSTS": "127.0.0.1",
        "MAX_SNIPPETS": "30",
        **overrides,
    }
    return RetrievalService(RetrievalSettings(**values))  # type: ignore[arg-type]


async def _evidence(site: str, url: str, **overrides: str) -> Evidence:
    service = _service(site, **overrides)
    try:
        return await service.evidence(url)
    finally:
        await service.aclose()


def _headings(evidence: Evidence) -> list[str]:
    """The snippets' section headings in reading order, each once."""
    headings: list[str] = []
    for snippet in evidence.snippets:
        if not headings or headings[-1] != snippet.heading:
            headings.append(snippet.heading)
    return headings


async def test_arxiv_evidence_is_the_abstract_then_the_body_of_the_paper(site: str) -> None:
    evidence = await _evidence(site, f"https://arxiv.org/abs/{PAPER}")
    assert evidence.coverage == Coverage.full and not evidence.truncated
    assert evidence.metadata["full_text"] == "read"
    assert [s.url for s in evidence.sources] == [
        f"http://arxiv.org/abs/{PAPER}v2",
        f"http://arxiv.org/pdf/{PAPER}v2",
        f"{site}/arxiv/html/{PAPER}",
    ]
    assert evidence.snippets[0].heading == "Abstract" and evidence.snippets[0].text.startswith(ABSTRACT_START)
    assert _headings(evidence) == [
        "Abstract",
        "Introduction",
        "Chunk caches",
        "The freshness test",
        "Experiments",
        "Conclusion",
    ]
    text = evidence.text
    assert text.startswith(f"Abstract\n\n{ABSTRACT_START}") and text.count("We present chunk caches") == 1
    # Body prose in reading order; plain inline math kept as text, author-year citations kept.
    order = [
        "Readers rarely ask a single question about a long report.",
        "again in a different currency. Each of those questions",  # its [4, 7] citation gone
        "hands the best k chunks to a reader model. Most of that work repeats",  # its footnote gone
        "Caching the encoded chunks alone helps less than one would hope",
        "A freshness test that decides when a cached ranking",  # a list item
        "Longer documents need a stricter threshold",
        "We follow the session protocol of Adeyemi et al. (2023) and replay",
        "Accuracy dropped by at most 0.8 points",
        "Chunk caches are simple to add to an existing pipeline",
    ]
    positions = [text.find(phrase) for phrase in order]
    assert -1 not in positions and positions == sorted(positions), dict(zip(order, positions, strict=True))
    # A sentence holding a formula is dropped whole, not left broken.
    assert "Scoring all chunks costs" not in text and "computed as" not in text
    assert "where the two constants are fitted" not in text
    left_out = [
        "\\mathcal",  # math
        "\U0001d4aa",  # the script O MathML renders
        "\\tau",
        "(1)",  # an equation number
        "Retrieval latency per question",  # a figure caption
        "Refer to caption",
        "Retrieval time and answer accuracy",  # a table and its caption
        "CourtRulings",
        "Replaying analyst sessions",  # the bibliography
        "References",
        "We count a chunk as re-read",  # a footnote
        "Harbour Institute",  # authors' affiliations, acknowledgements
        "example.org",
        "anonymous reviewers",
        "Threshold fitting",  # the appendix
        "Keywords",
        "Back to arXiv",  # arXiv's page around the paper
        "experimental HTML",
        "HTML conversions",
        "tikzlings",
        "LaTeXML",
        "[4",
    ]
    assert [phrase for phrase in left_out if phrase in text] == []
    assert all(line in text for s in evidence.snippets for line in s.text.split("\n"))


async def test_a_long_paper_is_cut_between_paragraphs_and_still_counts_as_read(site: str) -> None:
    whole = await _evidence(site, f"https://arxiv.org/abs/{PAPER}")
    cut = await _evidence(site, f"https://arxiv.org/abs/{PAPER}", MAX_EVIDENCE_CHARS="1500")
    assert cut.truncated and cut.coverage == Coverage.full
    assert len(cut.text) <= 1500 and "Readers rarely ask" in cut.text
    assert whole.text.startswith(cut.text) and whole.text[len(cut.text) :].startswith("\n\n")


@pytest.mark.parametrize(("paper", "status"), [(NO_HTML, "none"), (HTML_DOWN, "server_error")])
async def test_without_a_readable_full_text_the_abstract_stands_alone(site: str, paper: str, status: str) -> None:
    evidence = await _evidence(site, f"https://arxiv.org/abs/{paper}")
    assert evidence.coverage == Coverage.partial and not evidence.truncated
    assert evidence.metadata["full_text"] == status
    assert evidence.text.startswith(f"Abstract\n\n{ABSTRACT_START}") and "Introduction" not in evidence.text
    assert {s.heading for s in evidence.snippets} == {"Abstract"}
    assert [s.url for s in evidence.sources] == [f"http://arxiv.org/abs/{paper}v2", f"http://arxiv.org/pdf/{paper}v2"]


async def test_readme_snippets_follow_its_sections_as_clean_prose(site: str) -> None:
    evidence = await _evidence(site, "https://github.com/example/tidewatch")
    assert _headings(evidence) == ["", "tidewatch", "Why tidewatch?", "Usage", "License"]  # Installation is code
    by_heading = {s.heading: s.text for s in evidence.snippets}
    assert by_heading[""] == (
        "example/tidewatch: Flood-tide warnings from harbour pressure sensors. "
        "Primary language: Python. Topics: iot, sensors."
    )
    assert by_heading["tidewatch"].startswith("tidewatch follows the water level of a harbour")
    assert "The trend model needs about two hours of readings" in by_heading["Why tidewatch?"]
    assert by_heading["Usage"] == (
        "Call the read_level function from your own code to get the latest smoothed reading in centimetres. "
        "The warning thresholds live in tidewatch.toml, next to the sensor calibration."
    )
    assert by_heading["License"] == "tidewatch is released under the MIT license; see LICENSE for the full text."
    markup = ["<", ">", "](", "![", "`", "|", "**", "http", "[!", ":ocean:", "shields", "badge", "Documentation"]
    code = ["pip install", "docker", "--sensor", "interval", "Install the package", "harbourmaster"]
    assert [m for m in markup + code if any(m in s.text for s in evidence.snippets)] == []
    assert [m for m in markup + code if m in evidence.text] == []


async def test_a_web_page_keeps_headings_and_prose_in_reading_order(site: str) -> None:
    evidence = await _evidence(site, f"{site}/web/release-notes.html")
    assert evidence.title == "Quieter deploys with staged rollouts"
    assert _headings(evidence) == [
        "Quieter deploys with staged rollouts",
        "How a staged rollout works",
        "What changed for the teams",
    ]
    prose = [s.text for s in evidence.snippets]
    assert prose[0].startswith("Last spring a single bad configuration change")
    assert "The command returns at once" in prose[1] and "Deploys now take about twenty minutes" in prose[2]
    assert prose[-1].endswith("the on-call load dropped by a third.")
    boilerplate = ["cookies", "Careers", "Fernhill Engineering", "Related posts", "rights reserved", "Privacy"]
    code = ["fernctl", "To start a rollout"]  # the command and the sentence that introduced it
    assert [m for m in boilerplate + code if m in evidence.text] == []


async def test_snippets_break_between_sentences_never_inside_one(site: str) -> None:
    evidence = await _evidence(site, f"{site}/web/release-notes.html", SNIPPET_CHARS="160")
    lines = [line for s in evidence.snippets for line in s.text.split("\n")]
    assert len(evidence.snippets) >= 6 and all(len(s.text) <= 160 for s in evidence.snippets)
    assert [line for line in lines if not (line[0].isupper() and line.endswith("."))] == []
    headings = {s.heading for s in evidence.snippets}
    assert " ".join(lines) == " ".join(block for block in evidence.text.split("\n\n") if block not in headings)
