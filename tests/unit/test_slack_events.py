import pytest
from pydantic import ValidationError

from ingest.slack_events import extract_links, ignore_reason, shared_links
from technoshare_common.schemas import JobRunRequest


def test_links_in_slack_syntax_are_found_once_each_in_order() -> None:
    text = "see <https://a.example/x?a=1&amp;b=2|label> and <https://b.example> and <https://b.example> <mailto:x@y.z>"
    assert extract_links(text, limit=5) == ["https://a.example/x?a=1&b=2", "https://b.example"]
    assert extract_links(text, limit=1) == ["https://a.example/x?a=1&b=2"]
    assert extract_links("no links, only https://bare.example", limit=5) == []


def test_a_link_in_a_thread_is_answered_in_that_thread() -> None:
    event = {"type": "message", "channel": "C1", "ts": "2.0", "thread_ts": "1.0", "text": "<https://x.example>"}
    [link], refused = shared_links(event, 5)
    assert not refused
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


def test_a_link_that_can_never_be_a_job_is_skipped_and_the_links_after_it_are_kept() -> None:
    long_link = "https://x.example/" + "a" * 3000
    text = f"<http://example.com:99999/x> <{long_link}> <https://good.example/paper>"
    event = {"type": "message", "channel": "C1", "ts": "1.0", "text": text}
    links, refused = shared_links(event, 5)
    assert [link.url for link in links] == ["https://good.example/paper"]
    problems = {link.url: problem for link, problem in refused.items()}
    assert set(problems) == {"http://example.com:99999/x", long_link}
    assert "longer than 2048 characters" in problems[long_link]
    for url in problems:  # what composer's contract refuses too: no job could ever be handed over
        with pytest.raises(ValidationError):
            JobRunRequest(job_id="j", channel_id="C1", message_ts="1.0", thread_ts="1.0", url=url)


def test_a_nul_byte_in_the_message_is_dropped_from_the_jobs_text() -> None:
    """PostgreSQL's text columns refuse NUL: kept, the link could never be stored, and Slack's retries fail alike."""
    event = {"type": "message", "channel": "C1", "ts": "1.0", "text": "look\x00 <https://example.com/a>"}
    [link], refused = shared_links(event, 5)
    assert link.text == "look <https://example.com/a>" and not refused
