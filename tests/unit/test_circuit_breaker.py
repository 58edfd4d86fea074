"""The breaker's half-open probe always ends the half-open state, whatever the probe's result."""

import asyncio
from collections.abc import Iterator

import pytest

from llm_gateway.errors import GatewayError
from llm_gateway.providers import Upstream
from llm_gateway.settings import GatewaySettings, UpstreamConfig
from tests.support.openai_upstream import OpenAIUpstream
from tests.support.servers import serve_in_thread, wait_until

HI = [{"role": "user", "content": "hi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scripted() -> Iterator[tuple[OpenAIUpstream, str]]:
    upstream = OpenAIUpstream()
    upstream.hang_seconds = 2.0  # longer than any timeout here, short enough for the server to stop
    with serve_in_thread(upstream.app) as url:
        yield upstream, url


async def half_open(url: str, upstream_timeout: float = 5.0) -> tuple[Upstream, Clock]:
    """An upstream whose breaker opened after two 500s and whose reset time has passed."""
    settings = GatewaySettings(LLM_BREAKER_FAILURE_THRESHOLD=2, LLM_BREAKER_RESET_SECONDS=30)
    upstream = Upstream("probe", UpstreamConfig(base_url=f"{url}/v1", timeout_seconds=upstream_timeout), settings)
    clock = Clock()
    upstream.breaker._clock = clock
    for _ in range(2):
        with pytest.raises(GatewayError):
            await upstream.open({"model": "always-500", "messages": HI})
    assert upstream.breaker.state == "open"
    clock.now += 31
    assert upstream.breaker.state == "half_open"
    return upstream, clock


async def test_a_4xx_probe_closes_the_circuit(scripted: tuple[OpenAIUpstream, str]) -> None:
    upstream, _ = await half_open(scripted[1])
    with pytest.raises(GatewayError) as refused:
        await upstream.open({"model": "bad-request", "messages": HI})
    assert refused.value.status_code == 400
    assert upstream.breaker.state == "closed"  # the upstream answered: it is up
    (await upstream.open({"model": "gpt-4o-mini", "messages": HI})).raw.release()
    await upstream.aclose()


async def test_a_cancelled_probe_opens_the_circuit_again(scripted: tuple[OpenAIUpstream, str]) -> None:
    upstream, clock = await half_open(scripted[1])
    probe = asyncio.create_task(upstream.open({"model": "hang", "messages": HI}))
    await asyncio.to_thread(wait_until, lambda: scripted[0].calls["hang"] == 1, 10, 0.01, "the probe to arrive")
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert upstream.breaker.state == "open"
    clock.now += 31
    (await upstream.open({"model": "gpt-4o-mini", "messages": HI})).raw.release()
    assert upstream.breaker.state == "closed"
    await upstream.aclose()


async def test_a_timed_out_probe_opens_the_circuit_again(scripted: tuple[OpenAIUpstream, str]) -> None:
    upstream, clock = await half_open(scripted[1], upstream_timeout=0.2)
    with pytest.raises(GatewayError) as refused:
        await upstream.open({"model": "hang", "messages": HI})
    assert refused.value.status_label == "timeout"
    assert upstream.breaker.state == "open"
    clock.now += 31
    (await upstream.open({"model": "gpt-4o-mini", "messages": HI})).raw.release()
    assert upstream.breaker.state == "closed"
    await upstream.aclose()


async def test_a_rate_limited_probe_closes_the_circuit(scripted: tuple[OpenAIUpstream, str]) -> None:
    upstream, _ = await half_open(scripted[1])
    with pytest.raises(GatewayError) as refused:
        await upstream.open({"model": "rate-limited", "messages": HI})
    assert refused.value.status_code == 429
    assert upstream.breaker.state == "closed"
    await upstream.aclose()


async def test_a_probe_that_fails_before_it_is_sent_leaves_the_breaker_half_open(
    scripted: tuple[OpenAIUpstream, str],
) -> None:
    """A malformed request raised while being adapted once left `probing` set: every call after was circuit_open."""
    upstream, _ = await half_open(scripted[1])
    with pytest.raises((TypeError, AttributeError)):
        await upstream.open({"model": "gpt-4o-mini", "messages": HI, "stream": True, "stream_options": [1]})
    assert upstream.breaker.state == "half_open"
    (await upstream.open({"model": "gpt-4o-mini", "messages": HI})).raw.release()
    assert upstream.breaker.state == "closed"
    await upstream.aclose()
