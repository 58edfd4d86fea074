"""Sentence handling shared by the gates, the eval scorers and the structured-output schemas."""

import re

# A sentence ends at . ! or ? (optionally closed by a quote or bracket) followed by whitespace.
# Periods inside tokens ("v2.0", "arxiv.org") are not followed by whitespace and never split.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]?\s+")

# One sentence of 4 to 21 words: no terminal punctuation followed by a space inside, terminal
# punctuation at the end. Used as a JSON-schema `pattern`, so it keeps to the regex subset that
# OpenAI's structured outputs and llama.cpp's grammar converter both accept; the repetition is
# bounded per word and per sentence, since llama.cpp cannot compile one long bounded repeat.
# Quotes, backslashes and control characters are excluded because llama.cpp applies the pattern
# to the raw JSON string body, where an unescaped quote would end the string.
_CHAR = r'[^ .!?"\\\x00-\x1f]'
_WORD = rf"({_CHAR}|[.!?]{_CHAR})"
ONE_SENTENCE_PATTERN = rf"^[A-Za-z0-9]{_WORD}{{0,18}}( {_WORD}{{1,18}}){{3,20}}[.!?]$"


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences; empty pieces are dropped."""
    return [s.strip() for s in _BOUNDARY.split(text.strip()) if s.strip()]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))
