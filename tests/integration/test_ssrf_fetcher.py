"""The fetcher refuses every address that is not public, on every hop, and caps what it reads."""

import ipaddress

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from retrieval.fetcher import FetchError, SafeFetcher, blocked_reason
from retrieval.settings import RetrievalSettings
from tests.support.servers import serve_in_thread

PAGE = "<html><head><title>T</title></head><body><article><p>Hello there.</p></article></body></html>"


def _site() -> FastAPI:
    app = FastAPI()

    @app.get("/page")
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/to-metadata")
    def to_metadata() -> RedirectResponse:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)

    @app.get("/to-localhost")
    def to_localhost() -> RedirectResponse:
        return RedirectResponse("http://localhost/admin", status_code=301)

    @app.get("/hop")
    def hop() -> RedirectResponse:
        return RedirectResponse("/page", status_code=302)

    @app.get("/loop")
    def loop() -> RedirectResponse:
        return RedirectResponse("/loop", status_code=302)

    @app.get("/big-declared")
    def big_declared() -> Response:
        return Response(b"x" * 5000, media_type="text/html")

    @app.get("/big-streamed")
    def big_streamed() -> StreamingResponse:
        return StreamingResponse((b"y" * 1000 for _ in range(10)), media_type="text/html")

    @app.get("/image")
    def image() -> Response:
        return Response(b"\x89PNG", media_type="image/png")

    return app


@pytest.fixture(scope="module")
def site() -> str:  # type: ignore[misc]
    with serve_in_thread(_site()) as url:
        yield url


def _fetcher(**overrides: object) -> SafeFetcher:
    values = {
        "RETRIEVAL_ALLOWED_HOSTS": "127.0.0.1",
        "FETCH_MAX_BYTES": "4096",
        "FETCH_MAX_REDIRECTS": "3",
        **overrides,
    }
    return SafeFetcher(RetrievalSettings(**values))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64
    ],
)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "140.82.112.3", "2606:4700::6810:84e5", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


async def test_an_allow_listed_host_is_fetched_and_redirects_are_followed(site: str) -> None:
    page = await _fetcher().fetch(f"{site}/hop")
    assert page.url.endswith("/page") and b"Hello there." in page.body


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
    ],
)
async def test_private_and_metadata_ips_are_refused(url: str) -> None:
    with pytest.raises(FetchError) as error:
        await _fetcher(RETRIEVAL_ALLOWED_HOSTS="").fetch(url)
    assert error.value.kind == "blocked"


async def test_a_name_resolving_to_loopback_is_refused(site: str) -> None:
    port = site.rsplit(":", 1)[1]
    with pytest.raises(FetchError) as error:
        await _fetcher().fetch(f"http://localhost:{port}/page")  # only 127.0.0.1 is allow-listed
    assert error.value.kind == "blocked" and "127.0.0.1" in str(error.value)


async def test_a_redirect_to_the_metadata_address_is_refused(site: str) -> None:
    with pytest.raises(FetchError) as error:
        await _fetcher().fetch(f"{site}/to-metadata")
    assert error.value.kind == "blocked" and "169.254" in str(error.value)


async def test_a_redirect_to_localhost_is_refused(site: str) -> None:
    with pytest.raises(FetchError) as error:
        await _fetcher().fetch(f"{site}/to-localhost")
    assert error.value.kind == "blocked"


async def test_redirect_loops_stop(site: str) -> None:
    with pytest.raises(FetchError) as error:
        await _fetcher().fetch(f"{site}/loop")
    assert error.value.kind == "redirects"


@pytest.mark.parametrize("path", ["/big-declared", "/big-streamed"])
async def test_oversized_bodies_are_refused(site: str, path: str) -> None:
    with pytest.raises(FetchError) as error:
        await _fetcher().fetch(f"{site}{path}")
    assert error.value.kind == "too_large"


async def test_non_text_content_is_refused(site: str) -> None:
    with pytest.raises(FetchError) as error:
        await _fetcher().fetch(f"{site}/image")
    assert error.value.kind == "content_type"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/"])
async def test_only_http_and_https_are_allowed(url: str) -> None:
    with pytest.raises(FetchError) as error:
        await _fetcher().fetch(url)
    assert error.value.kind == "blocked"
