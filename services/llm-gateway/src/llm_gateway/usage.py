"""Token usage as the upstream reported it, or as tiktoken estimated it when the upstream said nothing."""

from dataclasses import dataclass
from typing import Any


@dataclass
class CallUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: dict[str, Any] | None) -> "CallUsage | None":
        """OpenAI's `usage` object, including cached and reasoning token details; None when absent."""
        if not usage or usage.get("prompt_tokens") is None:
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        )

    def by_kind(self) -> dict[str, int]:
        """Tokens split for billing: input excludes the cached part; output includes reasoning."""
        return {
            "input": self.prompt_tokens - min(self.cached_tokens, self.prompt_tokens),
            "cached": self.cached_tokens,
            "output": self.completion_tokens - min(self.reasoning_tokens, self.completion_tokens),
            "reasoning": self.reasoning_tokens,
        }
