"""Sentence handling shared by the gates, the eval scorers and the structured-output schemas."""

import re

# A sentence ends at . ! or ? (optionally closed by a quote or bracket) followed by whitespace.
# Periods inside tokens ("v2.0", "arxiv.org") are not followed by whitespace and never split.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]?\s+")

# One sentence: starts with a letter or digit, no terminal punctuation followed by a space
# inside, ends with terminal punctuation. Used as a JSON-schema `pattern`, so it stays in the
# regex subset that llama.cpp's grammar converter and OpenAI's structured outputs both accept.
ONE_SENTENCE_PATTERN = r"^[A-Za-z0-9]([^.!?]|[.!?][^.!?\s]){12,260}[.!?]$"


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences; empty pieces are dropped."""
    return [s.strip() for s in _BOUNDARY.split(text.strip()) if s.strip()]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))
