"""A local stand-in for arXiv's export API, GitHub's REST API and a few web pages, serving the real
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


@app.get("/github/repos/{owner}/{repo}")
def github_repo(owner: str, repo: str) -> JSONResponse:
    entry, text = readme(owner, repo)
    first_paragraph = next((line.strip() for line in text.splitlines() if len(line.strip()) > 40), "")
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


@app.get("/web/{name}.html")
def web_page(name: str) -> HTMLResponse:
    path = SAMPLES / "web" / f"{name}.md"
    if not path.is_file():
        raise HTTPException(404)
    title, _source, *body = path.read_text().splitlines()
    paragraphs = "\n".join(f"<p>{html.escape(p)}</p>" for p in "\n".join(body).split("\n\n") if p.strip())
    return HTMLResponse(
        f"<!doctype html><html><head><title>{html.escape(title.lstrip('# '))}</title></head>"
        f"<body><nav>Home | Docs | Blog</nav><article><h1>{html.escape(title.lstrip('# '))}</h1>{paragraphs}"
        "</article><footer>Sample page served locally</footer></body></html>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
