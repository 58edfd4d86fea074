"""A link that cannot be read ends in retrieval's 422 with a kind per cause, whether the site may answer later, and
a message a thread reply can carry: it names no address, host or port."""

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from retrieval.main import build_app
from retrieval.settings import RetrievalSettings
from technoshare_common.schemas import UnreadableLink
from tests.support.servers import free_port, serve_in_thread

_INTERNAL = re.compile(r"\d{1,3}(\.\d{1,3}){3}|\[?[0-9a-f]*::|localhost|\.invalid|:\d{2,5}\b", re.I)


def _site() -> FastAPI:
    app = FastAPI()

    @app.get("/status/{code}")
    def status(code: int) -> Response:
        raise HTTPException(code)

    @app.get("/slow")
    async def slow() -> HTMLResponse:
        await asyncio.sleep(3)
        return HTMLResponse("<p>too late</p>")

    @app.get("/cut-off")
    def cut_off() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"<html><body><p>The start of a page"
            raise RuntimeError("the server dies mid-answer")

        return StreamingResponse(body(), media_type="text/html")

    @app.get("/paper.pdf")
    def pdf() -> Response:
        return Response(b"%PDF-1.7", media_type="application/pdf")

    @app.get("/huge")
    def huge() -> HTMLResponse:
        return HTMLResponse("<p>" + "x" * 10_000 + "</p>")

    @app.get("/loop")
    def loop() -> RedirectResponse:
        return RedirectResponse("/loop", status_code=302)

    @app.get("/to-private")
    def to_private() -> RedirectResponse:
        return RedirectResponse("http://10.20.30.40/admin", status_code=302)

    return app


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_in_thread(_site()) as url:
        yield url


@pytest.fixture(scope="module")
def retrieval(site: str) -> Iterator[str]:
    settings = RetrievalSettings(
        RETRIEVAL_ALLOWED_HOSTS="127.0.0.1",
        FETCH_MAX_BYTES=4096,
        FETCH_TIMEOUT_SECONDS=1,
        FETCH_MAX_REDIRECTS=3,
        GITHUB_API_URL=f"{site}/status/404",  # every repository is missing
    )  # type: ignore[call-arg]
    with serve_in_thread(build_app(settings)) as url:
        yield url


@pytest.mark.parametrize(
    ("link", "kind", "transient"),
    [
        ("{site}/status/404", "not_found", False),
        ("{site}/status/410", "not_found", False),
        ("https://github.com/example/missing", "not_found", False),
        ("{site}/status/403", "http_status", False),
        ("http://no-such-host.invalid/page", "dns", False),
        ("http://169.254.169.254/latest/meta-data/", "blocked", False),
        ("http://[::1]:8080/", "blocked", False),
        ("{site}/to-private", "blocked", False),
        ("{site}/paper.pdf", "content_type", False),
        ("{site}/huge", "too_large", False),
        ("{site}/loop", "redirects", False),
        ("{site}/status/503", "server_error", True),
        ("{site}/status/429", "rate_limited", True),
        ("{site}/slow", "timeout", True),
        ("http://127.0.0.1:{closed}/page", "unreachable", True),
        ("{site}/cut-off", "unreachable", True),
    ],
)
def test_an_unreadable_link_gets_a_422_with_its_kind_and_a_message_naming_no_address(
    retrieval: str, site: str, link: str, kind: str, transient: bool
) -> None:
    url = link.format(site=site, closed=free_port())
    response = httpx.post(f"{retrieval}/v1/evidence", json={"url": url}, timeout=30)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert UnreadableLink.model_validate(detail).kind.transient is transient  # the typed contract
    assert (detail["kind"], detail["transient"]) == (kind, transient)
    assert detail["message"].endswith(".") and not _INTERNAL.search(detail["message"]), detail["message"]
    assert detail["detail"]  # what operators need, addresses included, stays in the answer


def test_the_messages_say_what_happened(retrieval: str, site: str) -> None:
    def message(url: str) -> str:
        return httpx.post(f"{retrieval}/v1/evidence", json={"url": url}, timeout=30).json()["detail"]["message"]

    assert message(f"{site}/status/404") == "The page does not exist (HTTP 404)."
    assert (
        message(f"{site}/status/503") == "The site answered with an error of its own (HTTP 503); it may be temporary."
    )
    assert message(f"{site}/paper.pdf") == "The link is application/pdf, not a web page or a text document."
    assert message("https://github.com/example/missing") == "GitHub has no public repository example/missing."
