"""An HTTP fetcher that cannot be turned against the cluster (SSRF).

Every hop (the first request and each redirect) resolves the host once, refuses the whole name if
any address it resolves to is not public, then connects to that pinned address (TLS still verifies
the certificate for the host name through SNI), so DNS rebinding between check and connect is moot.
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from retrieval.settings import RetrievalSettings
from technoshare_common.schemas import UNREADABLE_REASONS, UnreadableKind, UnreadableLink

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
        "ff00::/8",
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): whatever a site's own translator reaches
    )
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: its last 32 bits are an IPv4 address

# getaddrinfo's answers for a name that does not exist (EAI_NODATA is glibc's, absent elsewhere).
_NO_SUCH_NAME = frozenset(code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None)

TEXT_CONTENT_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "text/plain",
        "text/markdown",
        "text/x-markdown",
        "application/json",
        "application/vnd.github.raw+json",
        "application/vnd.github.raw",
        "application/atom+xml",
        "application/xml",
        "text/xml",
    }
)


class FetchError(Exception):
    """The link could not be read: `kind` says why (metrics, the job's outcome), `public` says it in words a
    thread reply can carry (naming no address), and the exception's own message keeps the details operators need."""

    def __init__(self, kind: str, message: str, status_code: int | None = None, *, public: str | None = None) -> None:
        super().__init__(message)
        self.kind = UnreadableKind(kind)
        self.status_code = status_code
        reason = UNREADABLE_REASONS[self.kind]
        self.public = public or f"{reason[0].upper()}{reason[1:]}."

    @property
    def transient(self) -> bool:
        return self.kind.transient

    def body(self) -> UnreadableLink:
        return UnreadableLink(kind=self.kind, message=self.public, transient=self.transient, detail=str(self))


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address must not be fetched, or None for a public one."""
    embedded: IPAddress | None = None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    for candidate in (ip, embedded):
        if candidate is None:
            continue
        for network in _BLOCKED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                return f"{ip} is in blocked range {network}"
        if not candidate.is_global:
            return f"{ip} is not a public address"
    return None


@dataclass(frozen=True)
class FetchedPage:
    url: str
    status_code: int
    content_type: str
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class SafeFetcher:
    def __init__(self, settings: RetrievalSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(retries=0),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would bypass the address pinning
            timeout=httpx.Timeout(settings.fetch_timeout_seconds, connect=5.0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content_types: frozenset[str] = TEXT_CONTENT_TYPES,
    ) -> FetchedPage:
        try:
            async with asyncio.timeout(self.settings.fetch_timeout_seconds):
                return await self._follow(url, headers or {}, content_types)
        except TimeoutError as exc:
            seconds = self.settings.fetch_timeout_seconds
            raise FetchError(
                "timeout",
                f"fetching {url} took longer than {seconds}s",
                public=f"The site did not answer within {seconds:g} seconds.",
            ) from exc

    async def _follow(self, url: str, headers: dict[str, str], content_types: frozenset[str]) -> FetchedPage:
        current = url
        for _ in range(self.settings.fetch_max_redirects + 1):
            target = httpx.URL(current)
            pinned = await self._pin(target)
            request_headers = {"user-agent": self.settings.user_agent, "host": _host_header(target), **headers}
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            request = self._client.build_request(
                "GET", target.copy_with(host=pinned), headers=request_headers, extensions=extensions
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise _transport_error(exc, f"could not connect to {target.host}") from exc
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError("http_status", f"redirect without Location from {current}")
                    current = urljoin(current, location)
                    continue
                if response.status_code >= 400:
                    raise _status_error(current, response.status_code)
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type not in content_types:
                    what = content_type or "of no declared type"
                    raise FetchError(
                        "content_type",
                        f"{current} is {content_type or 'untyped'}, not a text page",
                        public=f"The link is {what}, not a web page or a text document.",
                    )
                body = await self._read_capped(response, current)
                return FetchedPage(current, response.status_code, content_type, body)
            except httpx.TransportError as exc:
                raise _transport_error(exc, f"the connection to {target.host} broke while reading") from exc
            finally:
                await response.aclose()
        hops = self.settings.fetch_max_redirects
        raise FetchError(
            "redirects", f"more than {hops} redirects from {url}", public=f"The link redirects more than {hops} times."
        )

    async def _pin(self, url: httpx.URL) -> str:
        if url.scheme not in ("http", "https"):
            raise FetchError(
                "blocked",
                f"scheme {url.scheme!r} is not allowed; only http and https",
                public=f"Only http and https links are read, not {url.scheme}.",
            )
        host = url.host
        if not host:
            raise FetchError("blocked", "URL has no host", public="The link has no host.")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            # A name that does not exist will not start to; any other resolver failure may pass.
            kind = "dns" if isinstance(exc, socket.gaierror) and exc.errno in _NO_SUCH_NAME else "unreachable"
            raise FetchError(kind, f"cannot resolve {host}: {exc}") from exc
        # An IP family's sockaddr starts with the address as text (typeshed allows an int for other families).
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise FetchError("unreachable", f"{host} resolves to no address")
        if host.lower() not in self.settings.allowed_hosts:
            for address in addresses:
                if reason := blocked_reason(address):
                    raise FetchError("blocked", f"refusing {host}: {reason}")
        return str(addresses[0])

    async def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        limit = self.settings.fetch_max_bytes
        declared = response.headers.get("content-length")
        public = f"The page is larger than the {_size(limit)} a link may have."
        if declared and declared.isdigit() and int(declared) > limit:
            raise FetchError("too_large", f"{url} declares {declared} bytes, over the {limit}-byte cap", public=public)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise FetchError("too_large", f"{url} is over the {limit}-byte cap", public=public)
            chunks.append(chunk)
        return b"".join(chunks)


def _status_error(url: str, status: int) -> FetchError:
    message = f"{url} answered HTTP {status}"
    if status in (404, 410):
        gone = "does not exist" if status == 404 else "has been removed"
        return FetchError("not_found", message, status, public=f"The page {gone} (HTTP {status}).")
    if status == 429:
        return FetchError("rate_limited", message, status, public="The site is limiting requests for now (HTTP 429).")
    if status >= 500:
        public = f"The site answered with an error of its own (HTTP {status}); it may be temporary."
        return FetchError("server_error", message, status, public=public)
    return FetchError("http_status", message, status, public=f"The site refused to serve the page (HTTP {status}).")


def _transport_error(exc: httpx.TransportError, what: str) -> FetchError:
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return FetchError(kind, f"{what}: {type(exc).__name__}")


def _size(limit: int) -> str:
    return f"{limit / 1_048_576:g} MB" if limit >= 1_048_576 else f"{limit} bytes"


def _host_header(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port else host
