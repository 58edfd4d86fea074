"""The versioned price table (data/model_prices.yaml) and what a call cost."""

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from llm_gateway.usage import CallUsage

PER_MILLION = 1_000_000
SNAPSHOT_SUFFIX = re.compile(r"^(?P<model>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


class ModelPrice(BaseModel):
    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)
    source: str
    taken_on: dt.date


@dataclass(frozen=True)
class Cost:
    input_usd: float
    output_usd: float

    @property
    def total_usd(self) -> float:
        return self.input_usd + self.output_usd


class PriceTable:
    def __init__(self, prices: dict[str, ModelPrice], version: str = "") -> None:
        self.prices = prices
        self.version = version

    @classmethod
    def load(cls, path: Path) -> "PriceTable":
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        models = {name: ModelPrice.model_validate(price) for name, price in (raw.get("models") or {}).items()}
        return cls(models, str(raw.get("version", "")))

    def price_for(self, model: str) -> ModelPrice | None:
        if model in self.prices:
            return self.prices[model]
        # A dated snapshot (gpt-4o-mini-2024-07-18, gpt-4-0613) costs what its model costs; any other
        # variant (gpt-4o-audio-preview) may be priced differently, so it stays unpriced until listed.
        snapshot = SNAPSHOT_SUFFIX.match(model)
        return self.prices.get(snapshot.group("model")) if snapshot else None

    def cost(self, model: str, usage: CallUsage) -> Cost | None:
        """None when the model has no price: unknown, never $0."""
        price = self.price_for(model)
        if price is None:
            return None
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        input_usd = ((usage.prompt_tokens - cached) * price.input + cached * price.cached_input) / PER_MILLION
        # Reasoning tokens are already counted inside completion_tokens, and billed as output.
        output_usd = usage.completion_tokens * price.output / PER_MILLION
        return Cost(input_usd=input_usd, output_usd=output_usd)

    def prompt_cost_estimate(self, model: str, prompt_tokens: int) -> float:
        price = self.price_for(model)
        return prompt_tokens * price.input / PER_MILLION if price else 0.0
