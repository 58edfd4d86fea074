"""What the thread is told instead of a summary when a link cannot be read (UNREADABLE_LINK_REPLY)."""

from composer.settings import ComposerSettings
from technoshare_common.schemas import Notice

TOO_LITTLE_TEXT = "too_little_text"

# retrieval's 422 kinds for a link that cannot be read, and what the thread is told (retrieval's own message
# names no address either; these keep the bot's wording in one place).
UNREADABLE_REASONS = {
    "not_found": "the page does not exist (HTTP 404 or 410)",
    "http_status": "the site refused to serve it",
    "dns": "its host name does not exist",
    "blocked": "it points to an address the bot may not read",
    "content_type": "it is not a page of text",
    "too_large": "the page is too large to read",
    "redirects": "it redirects too many times",
    "parse": "the site's answer could not be read",
    # transient: answered so only on the job's final attempt
    "unreachable": "the site could not be reached",
    "timeout": "the site did not answer in time",
    "server_error": "the site kept failing",
    "rate_limited": "the site kept turning the bot away (rate limited)",
    # composer's own: read, but with fewer than two sentences that could be quoted
    TOO_LITTLE_TEXT: "it has too little text to summarise",
}


def unreadable_notice(detail: object, settings: ComposerSettings) -> Notice:
    """`detail`: retrieval's 422 body ({"kind": ...}); the wording never echoes its message or any address."""
    kind = detail.get("kind") if isinstance(detail, dict) else None
    reason = UNREADABLE_REASONS.get(str(kind), "it could not be read")
    return Notice(
        text=f"I could not summarise this link: {reason}.",
        delivery=settings.unreadable_link_reply,
        reaction=settings.unreadable_link_reaction,
    )
