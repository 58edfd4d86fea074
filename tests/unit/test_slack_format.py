"""A reply's notes are shown under it, in Slack's text and blocks, without disturbing the three sections."""

import json

import pytest

from technoshare_common import slack_format
from technoshare_common.schemas import ComposedReply, ProjectLink
from technoshare_common.slack_format import render_blocks, render_text

NOTES = [
    "Quoted from the source: the language model was unavailable.",
    "The source is short: this summary has 4 sentences.",
]


def _reply(notes: list[str]) -> ComposedReply:
    return ComposedReply(
        tldr=["One thing here.", "Two things here.", "Three things here."],
        summary=["A summary sentence here.", "Another summary sentence."],
        projects=[ProjectLink(theme="ML platform", relevance="It helps the platform team.")],
        notes=notes,
    )


def test_notes_follow_the_three_sections_as_italic_lines() -> None:
    text = render_text(_reply(NOTES))
    assert text == render_text(_reply([])) + slack_format.SECTION_SEPARATOR + "\n".join(f"_{n}_" for n in NOTES)


def test_split_notes_gives_back_the_sections_and_the_notes() -> None:
    sections = render_text(_reply([]))
    assert slack_format.split_notes(render_text(_reply(NOTES))) == (sections, NOTES)
    assert slack_format.split_notes(sections) == (sections, [])


def test_notes_are_in_the_final_context_block_with_the_source_link() -> None:
    blocks = render_blocks(_reply(NOTES), "https://example.com/paper")
    context = blocks[-1]
    assert context["type"] == "context"
    [element] = context["elements"]
    assert element["text"].splitlines() == [f"_{n}_" for n in NOTES] + ["Source: <https://example.com/paper>"]
    assert not any(NOTES[0] in b["text"]["text"] for b in blocks if b["type"] == "section")


@pytest.mark.parametrize("note", ["", "two\nlines", "x" * 201])
def test_a_note_is_one_short_line(note: str) -> None:
    with pytest.raises(ValueError):
        _reply([note])


def test_every_text_is_escaped_so_no_sentence_becomes_a_mention_or_a_link() -> None:
    hostile = "Ping <!channel> & <@U024BE7LH> in <#C024BE7LR|general> via <https://evil.example|here>."
    reply = ComposedReply(
        tldr=[hostile],
        summary=["A plain sentence."],
        projects=[ProjectLink(theme="Backend services", relevance=hostile)],
        notes=[hostile],
    )
    text = render_text(reply)
    blocks = json.dumps(render_blocks(reply, "https://example.com/a>b|c"))
    for rendered in (text, blocks):
        assert (
            "<!" not in rendered and "<@" not in rendered and "<#" not in rendered and "<https://evil" not in rendered
        )
    assert "Ping &lt;!channel&gt; &amp; &lt;@U024BE7LH&gt;" in text
    assert text.startswith("*TL;DR*\n") and "_Ping &lt;!channel&gt;" in text  # the reply's own formatting stays
    assert "<https://example.com/a%3Eb%7Cc>" in blocks
