"""llm-gateway is the only layer that retries an LLM call; each retry setting has a name of its own."""

from collections.abc import Iterator

import pytest

from composer.llm import LLMClient, LLMUnavailable
from composer.settings import ComposerSettings
from llm_gateway.settings import GatewaySettings
from tests.support.openai_upstream import OpenAIUpstream
from tests.support.servers import serve_in_thread


@pytest.fixture
def scripted() -> Iterator[tuple[OpenAIUpstream, str]]:
    upstream = OpenAIUpstream()
    with serve_in_thread(upstream.app) as url:
        yield upstream, url


async def test_composer_calls_the_gateway_once_per_llm_call(
    scripted: tuple[OpenAIUpstream, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_MAX_RETRIES", "3")  # the old shared name must not bring composer's retries back
    client = LLMClient(ComposerSettings(LLM_GATEWAY_URL=scripted[1]))
    with pytest.raises(LLMUnavailable):
        await client.chat(
            persona="stage_a", model="always-500", messages=[{"role": "user", "content": "hi"}], parameters={}
        )
    await client.aclose()
    assert scripted[0].calls["always-500"] == 1


def test_the_gateway_retry_setting_has_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_UPSTREAM_MAX_RETRIES", "4")
    assert GatewaySettings().max_retries == 4
