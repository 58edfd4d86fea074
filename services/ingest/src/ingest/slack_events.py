"""Which Slack events become jobs, and the links in them."""

import re
from dataclasses import dataclass
from typing import Any

from technoshare_common.redaction import user_pseudonym
from technoshare_common.schemas import link_problem

# Slack wraps links as <https://example.com> or <https://example.com|label>.
_SLACK_LINK = re.compile(r"<(https?://[^>|\s]+)(?:\|[^>]*)?>")

# Subtypes that are still a person sharing something new; every other subtype (bot_message,
# message_changed, message_deleted, channel_join, ...) is not.
_ANSWERED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})


@dataclass(frozen=True)
class SharedLink:
    channel_id: str
    message_ts: str
    thread_ts: str
    url: str
    text: str
    user: str = ""  # the sender as MLflow may know them: technoshare_common.redaction.user_pseudonym, never the id


def extract_links(text: str, limit: int) -> list[str]:
    """Distinct links in the order they appear."""
    seen: dict[str, None] = {}
    for match in _SLACK_LINK.finditer(text or ""):
        seen.setdefault(match.group(1).replace("&amp;", "&"), None)
    return list(seen)[:limit]


def refused_links(links: list[str]) -> dict[str, str]:
    """The links that can never become a job, each with why (technoshare_common.schemas.link_problem)."""
    return {url: problem for url in links if (problem := link_problem(url))}


def ignore_reason(event: dict[str, Any], channel_filter: str | None) -> str | None:
    """Why an event is not a job, or None when it is one."""
    if event.get("type") != "message":
        return f"event type {event.get('type')!r}"
    if event.get("bot_id") or event.get("bot_profile"):
        return "bot message"
    if event.get("subtype") not in _ANSWERED_SUBTYPES or event.get("hidden"):
        return f"subtype {event.get('subtype')!r}"
    if channel_filter and event.get("channel") != channel_filter:
        return "other channel"
    if not event.get("channel") or not event.get("ts"):
        return "no channel or ts"
    return None


def shared_links(
    event: dict[str, Any], limit: int, user_key: str = ""
) -> tuple[list[SharedLink], dict[SharedLink, str]]:
    """The message's links that become jobs, and those refused with why: a malformed link is never fetched (it
    gets the unreadable notice), and the links after it in the message are still answered. `user_key` keys the
    sender's pseudonym."""
    text = (event.get("text") or "").replace("\x00", "")  # PostgreSQL's text refuses NUL; Slack would retry in vain
    channel, ts = event["channel"], event["ts"]
    thread_ts = event.get("thread_ts") or ts
    links = extract_links(text, limit)
    problems = refused_links(links)
    user = user_pseudonym(str(event.get("user") or ""), user_key)
    shared = {url: SharedLink(channel, ts, thread_ts, url, text, user) for url in links}
    return [shared[url] for url in links if url not in problems], {shared[u]: why for u, why in problems.items()}
