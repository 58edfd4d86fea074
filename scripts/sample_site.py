"""A local stand-in for arXiv's export API and HTML, GitHub's REST API and a few web pages, serving the real
documents bundled in data/samples/, so the embedded default and the tests run offline.

    python scripts/sample_site.py --port 8010
"""

import argparse
import html
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
ATOM_TYPE = "application/atom+xml; charset=utf-8"


@cache
def index() -> list[dict[str, Any]]:
    return json.loads((SAMPLES / "index.json").read_text())


def entries(kind: str) -> dict[str, dict[str, Any]]:
    return {e["id"].split(":", 1)[1]: e for e in index() if e["kind"] == kind}


def paper(arxiv_id: str) -> dict[str, Any] | None:
    entry = entries("arxiv").get(re.sub(r"v\d+$", "", arxiv_id))
    return json.loads((SAMPLES / entry["file"]).read_text()) if entry else None


def atom_entry(p: dict[str, Any]) -> str:
    authors = "".join(f"<author><name>{html.escape(a)}</name></author>" for a in p["authors"])
    return (
        f"<entry><id>http://arxiv.org/abs/{p['id']}v1</id><published>2023-01-01T00:00:00Z</published>"
        f"<title>{html.escape(p['title'])}</title><summary>{html.escape(p['abstract'])}</summary>{authors}"
        f'<link href="https://arxiv.org/abs/{p["id"]}v1" rel="alternate" type="text/html"/>'
        f'<link title="pdf" href="https://arxiv.org/pdf/{p["id"]}v1" rel="related" type="application/pdf"/>'
        f'<arxiv:primary_category term="{p.get("primary_category", "cs.LG")}"/>'
        f'<category term="{p.get("primary_category", "cs.LG")}"/></entry>'
    )


def atom_feed(papers: list[dict[str, Any]]) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">'
        f"<title>arXiv Query</title>{''.join(atom_entry(p) for p in papers)}</feed>"
    )


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)(?:\s*\{[^}]*\})?\s*$")
_MD_INLINE = (
    (re.compile(r"`([^`]+)`"), lambda m: f"<code>{html.escape(m.group(1))}</code>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>'),
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), lambda m: f"<a>{m.group(1)}</a>"),  # a reference link
    (re.compile(r"\*\*([^*]+)\*\*"), lambda m: f"<strong>{m.group(1)}</strong>"),
    (re.compile(r"(?<![\w*])[*_]([^*_\s][^*_]*)[*_](?![\w*])"), lambda m: f"<em>{m.group(1)}</em>"),
)


def render_markdown(markdown: str) -> str:
    """A web sample's Markdown as the HTML its site serves: headings, paragraphs, lists and code blocks."""
    parts: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    code: list[str] | None = None

    def inline(text: str) -> str:
        for pattern, replacement in _MD_INLINE:
            text = pattern.sub(replacement, text)
        return text

    def flush() -> None:
        if paragraph:
            parts.append(f"<p>{inline(' '.join(paragraph))}</p>")
        if items:
            parts.append("<ul>" + "".join(f"<li>{inline(item)}</li>" for item in items) + "</ul>")
        paragraph.clear()
        items.clear()

    for line in markdown.splitlines():
        stripped = line.strip()
        if code is not None:
            if stripped.startswith("```"):
                parts.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
                code = None
            else:
                code.append(line)
        elif stripped.startswith("```"):
            flush()
            code = []
        elif heading := _MD_HEADING.match(line):
            flush()
            level = len(heading.group(1))
            parts.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif not stripped or line.startswith(("///", "!!!")):  # blank, or an admonition's fence
            flush()
        elif re.match(r"^\[[^\]]+\]:\s", stripped):  # a link reference definition
            continue
        elif stripped.startswith(("- ", "* ")):
            if paragraph:
                flush()
            items.append(stripped[2:])
        elif items:
            items[-1] += " " + stripped
        else:
            paragraph.append(stripped)
    flush()
    return "\n".join(parts)


def readme(owner: str, repo: str) -> tuple[dict[str, Any], str]:
    entry = entries("github").get(f"{owner}/{repo}")
    if entry is None:
        raise HTTPException(404, detail={"message": "Not Found"})
    return entry, (SAMPLES / entry["file"]).read_text()


app = FastAPI(title="technoshare sample site")


@app.get("/arxiv/api/query")
def arxiv_query(id_list: str = "", search_query: str = "", max_results: int = Query(10, le=50)) -> Response:
    if id_list:
        papers = [p for p in (paper(i.strip()) for i in id_list.split(",")) if p]
    else:
        words = [w.lower() for w in search_query.removeprefix("all:").split() if len(w) > 2]
        all_papers = [paper(i) for i in entries("arxiv")]
        papers = [p for p in all_papers if p and any(w in (p["title"] + p["abstract"]).lower() for w in words)]
    return Response(atom_feed(papers[:max_results]), media_type=ATOM_TYPE)


@app.get("/arxiv/html/{arxiv_id:path}")
def arxiv_html(arxiv_id: str) -> Response:
    """The samples hold abstracts only: arXiv's answer for a paper without an HTML full text."""
    raise HTTPException(404, detail=f"No HTML for '{arxiv_id}'")


@app.get("/github/repos/{owner}/{repo}")
def github_repo(owner: str, repo: str) -> JSONResponse:
    entry, text = readme(owner, repo)
    prose = (line.strip() for line in re.sub(r"<!--.*?-->", "", text, flags=re.S).splitlines())
    first_paragraph = next((line for line in prose if len(line) > 40 and not line.startswith(tuple("<[!#|`*"))), "")
    return JSONResponse(
        {
            "full_name": f"{owner}/{repo}",
            "html_url": entry["url"],
            "description": first_paragraph[:200],
            "language": None,
            "topics": [],
            "stargazers_count": 0,
            "license": {"spdx_id": entry["license"]},
        }
    )


@app.get("/github/repos/{owner}/{repo}/readme")
def github_readme(owner: str, repo: str) -> Response:
    _, text = readme(owner, repo)
    return Response(text, media_type="application/vnd.github.raw+json; charset=utf-8")


# A page that tries to ping the whole channel through the bot: the mention as HTML entities, as raw text and
# inside a link (tests/e2e/test_slack_to_thread.py). Written for the tests; no real page is copied.
HOSTILE_PAGE = """<!doctype html><html><head><title>Scheduler release notes</title></head><body><article>
<h1>Scheduler release notes</h1>
<p>&lt;!channel&gt; The new scheduler balances work across every core of the machine.</p>
<p>Ask <@U024BE7LH> and <#C024BE7LR|general> about the rollout of the scheduler to production.</p>
<p>@here The scheduler cuts tail latency by half on busy machines with many short tasks.</p>
<p>Read <a href="https://example.com/notes">&lt;!everyone&gt; the full notes</a> before upgrading the scheduler.</p>
<p>The scheduler keeps a local queue per worker thread and steals work from other threads when idle.</p>
<p>Tasks that block are moved to a separate pool so that they never stall the worker threads.</p>
<p>Benchmarks show a throughput gain of forty percent on the standard web server workload.</p>
<p>The old scheduler remains available behind a configuration flag for one more release.</p>
<p>Work stealing keeps every worker thread busy while the queues of the other threads still hold tasks.</p>
</article></body></html>"""


@app.get("/hostile/mentions.html")
def hostile_mentions() -> HTMLResponse:
    return HTMLResponse(HOSTILE_PAGE)


@app.get("/web/{name}.html")
def web_page(name: str) -> HTMLResponse:
    path = SAMPLES / "web" / f"{name}.md"
    if not path.is_file():
        raise HTTPException(404)
    title, _source, *body = path.read_text().splitlines()
    return HTMLResponse(
        f"<!doctype html><html><head><title>{html.escape(title.lstrip('# '))}</title></head>"
        f"<body><nav>Home | Docs | Blog</nav><article><h1>{html.escape(title.lstrip('# '))}</h1>"
        f"{render_markdown(chr(10).join(body))}</article><footer>Sample page served locally</footer></body></html>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
