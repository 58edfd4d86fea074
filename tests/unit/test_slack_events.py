import pytest

from ingest.slack_events import extract_links, ignore_reason, shared_links


def test_links_in_slack_syntax_are_found_once_each_in_order() -> None:
    text = "see <https://a.example/x?a=1&amp;b=2|label> and <https://b.example> and <https://b.example> <mailto:x@y.z>"
    assert extract_links(text, limit=5) == ["https://a.example/x?a=1&b=2", "https://b.example"]
    assert extract_links(text, limit=1) == ["https://a.example/x?a=1&b=2"]
    assert extract_links("no links, only https://bare.example", limit=5) == []


def test_a_link_in_a_thread_is_answered_in_that_thread() -> None:
    event = {"type": "message", "channel": "C1", "ts": "2.0", "thread_ts": "1.0", "text": "<https://x.example>"}
    [link] = shared_links(event, 5)
    assert (link.message_ts, link.thread_ts, link.url) == ("2.0", "1.0", "https://x.example")


@pytest.mark.parametrize(
    "event,reason",
    [
        ({"bot_id": "B1"}, "bot message"),
        ({"subtype": "bot_message"}, "subtype 'bot_message'"),
        ({"subtype": "message_changed"}, "subtype 'message_changed'"),
        ({"subtype": "message_deleted"}, "subtype 'message_deleted'"),
        ({"type": "reaction_added"}, "event type 'reaction_added'"),
        ({"channel": "C2"}, "other channel"),
    ],
)
def test_what_is_not_a_job(event: dict[str, str], reason: str) -> None:
    base = {"type": "message", "channel": "C1", "ts": "1.0", "text": "<https://x.example>"}
    assert ignore_reason(base | event, channel_filter="C1") == reason


@pytest.mark.parametrize("subtype", [None, "file_share", "thread_broadcast"])
def test_people_sharing_are_jobs(subtype: str | None) -> None:
    event = {"type": "message", "channel": "C1", "ts": "1.0", "text": "<https://x.example>", "subtype": subtype}
    assert ignore_reason(event, channel_filter=None) is None
