"""Costs against hand-computed values, offline token counts, Retry-After, the circuit breaker, bounded labels."""

import email.utils
import hashlib
from pathlib import Path

import pytest

from llm_gateway.errors import GatewayError
from llm_gateway.metrics import OTHER, BoundedLabel
from llm_gateway.prices import PriceTable
from llm_gateway.resilience import CircuitBreaker, CircuitOpen, parse_retry_after
from llm_gateway.tokens import TIKTOKEN_URL, count_prompt_tokens, count_text_tokens, prepare_tiktoken_cache
from llm_gateway.usage import CallUsage
from technoshare_common.settings import REPO_DATA_DIR
from tests.support.openai_upstream import OPENAI_USAGE, REASONING_USAGE

PRICES = PriceTable.load(REPO_DATA_DIR / "model_prices.yaml")


def test_cached_input_is_billed_at_the_cached_rate() -> None:
    usage = CallUsage.from_openai(OPENAI_USAGE)
    assert usage is not None and usage.cached_tokens == 1920
    cost = PRICES.cost("gpt-4o-mini", usage)
    assert cost is not None
    # By hand: 86 uncached * $0.15/M + 1920 cached * $0.075/M; 300 output * $0.60/M.
    assert cost.input_usd == pytest.approx((86 * 0.15 + 1920 * 0.075) / 1e6)
    assert cost.output_usd == pytest.approx(300 * 0.60 / 1e6)
    assert cost.total_usd == pytest.approx(0.0003369)


def test_reasoning_tokens_are_billed_as_output_once() -> None:
    usage = CallUsage.from_openai(REASONING_USAGE)
    assert usage is not None and usage.reasoning_tokens == 1600
    cost = PRICES.cost("o4-mini", usage)
    assert cost is not None
    # 1200 input * $1.10/M + 1850 completion (1600 of them reasoning) * $4.40/M.
    assert cost.total_usd == pytest.approx((1200 * 1.10 + 1850 * 4.40) / 1e6)
    assert usage.by_kind() == {"input": 1200, "cached": 0, "output": 250, "reasoning": 1600}


def test_dated_snapshots_take_their_models_price_and_other_variants_none() -> None:
    assert PRICES.price_for("gpt-4o-mini-2024-07-18") == PRICES.prices["gpt-4o-mini"]
    assert PRICES.price_for("gpt-4o-2024-08-06") == PRICES.prices["gpt-4o"]
    assert PRICES.price_for("gpt-4.1-mini-0613") == PRICES.prices["gpt-4.1-mini"]
    assert PRICES.price_for("gpt-4o-audio-preview") is None
    assert PRICES.price_for("gpt-4o-minimal") is None


def test_an_unpriced_model_has_no_cost_rather_than_zero() -> None:
    assert PRICES.cost("mystery-model", CallUsage(prompt_tokens=10, completion_tokens=5)) is None
    local = PRICES.cost("smollm2-135m-instruct", CallUsage(prompt_tokens=10, completion_tokens=5))
    assert local is not None and local.total_usd == 0.0


def test_every_price_carries_its_source_and_date() -> None:
    assert len(PRICES.prices) >= 10
    for price in PRICES.prices.values():
        assert price.source and price.taken_on
        assert price.cached_input <= price.input


def test_tiktoken_works_offline_from_the_bundled_encodings(tmp_path: Path) -> None:
    prepared = prepare_tiktoken_cache(tmp_path / "tiktoken")
    for name in ("o200k_base", "cl100k_base"):
        assert (prepared / hashlib.sha1(TIKTOKEN_URL.format(name=name).encode()).hexdigest()).stat().st_size > 1e6
    # Known counts: "hello world" is two tokens in both encodings.
    assert count_text_tokens("gpt-4o-mini", "hello world") == 2
    assert count_text_tokens("gpt-4", "hello world") == 2
    # 3 to prime the reply + per message 3 framing + role + content.
    assert count_prompt_tokens("gpt-4o-mini", [{"role": "user", "content": "hello world"}]) == 3 + 3 + 1 + 2


def test_retry_after_takes_seconds_and_http_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=lambda: 1_000_000) == pytest.approx(30)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_the_circuit_opens_after_consecutive_failures_and_probes_once() -> None:
    now = [0.0]
    breaker = CircuitBreaker("up", threshold=2, reset_seconds=10, clock=lambda: now[0])
    breaker.before_call()
    breaker.record_failure()
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as refused:
        breaker.before_call()
    assert isinstance(refused.value, GatewayError) and refused.value.status_code == 503
    now[0] = 11.0
    assert breaker.state == "half_open"
    breaker.before_call()  # the one probe
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # others wait for the probe
    breaker.record_failure()
    assert breaker.state == "open"
    now[0] = 22.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"


def test_client_chosen_labels_are_bounded() -> None:
    label = BoundedLabel(limit=3)
    assert [label(f"p{i}") for i in range(5)] == ["p0", "p1", "p2", OTHER, OTHER]
    assert label("p1") == "p1"
    assert label(None) == OTHER
