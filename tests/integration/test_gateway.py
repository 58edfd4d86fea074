"""llm-gateway through the real openai client, in front of a scripted OpenAI-protocol upstream."""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_gateway.client import achat_with_tracking, chat_with_tracking
from llm_gateway.gateway import Gateway
from llm_gateway.main import build_app
from llm_gateway.providers import adapt_request
from llm_gateway.settings import GatewaySettings
from tests.support.openai_upstream import ANSWER, OPENAI_USAGE, OpenAIUpstream
from tests.support.servers import serve_in_thread, wait_until

SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}}
GPT_4O_MINI_COST = 0.0003369  # OPENAI_USAGE at gpt-4o-mini prices, by hand (see the unit tests)
TOKEN = "internal-token"
HI = [{"role": "user", "content": "hi"}]


def scrape(url: str) -> list[Any]:
    return [
        sample
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for sample in family.samples
    ]


@dataclass
class Running:
    url: str
    upstream: OpenAIUpstream
    upstream_url: str
    baseline: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Gateways in this process share Prometheus' registry: count from this gateway's start.
        self.baseline = scrape(self.url)

    def client(self, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=TOKEN, **({"max_retries": 0} | options))

    def metric(self, name: str, **labels: str) -> float:
        def total(samples: list[Any]) -> float:
            return sum(
                s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
            )

        if name.endswith("_open"):
            return total(scrape(self.url))
        return total(scrape(self.url)) - total(self.baseline)


def gateway_settings(upstream_url: str, **overrides: Any) -> GatewaySettings:
    values = {
        "LLM_UPSTREAM_BASE_URL": f"{upstream_url}/v1",
        "OPENAI_API_KEY": "sk-upstream-secret",
        "TECHNOSHARE_INTERNAL_TOKEN": TOKEN,
        "LLM_RETRY_BASE_SECONDS": 0.05,
        "LLM_UPSTREAM_TIMEOUT_SECONDS": 1.0,
    }
    return GatewaySettings(**(values | overrides))


@pytest.fixture
def upstream() -> Iterator[tuple[OpenAIUpstream, str]]:
    scripted = OpenAIUpstream()
    with serve_in_thread(scripted.app) as url:
        yield scripted, url


@pytest.fixture
def start_gateway(upstream: tuple[OpenAIUpstream, str]) -> Iterator[Any]:
    scripted, upstream_url = upstream
    with_stack: list[Any] = []

    def start(**overrides: Any) -> Running:
        server = serve_in_thread(build_app(gateway_settings(upstream_url, **overrides)))
        with_stack.append(server)
        return Running(server.__enter__(), scripted, upstream_url)

    yield start
    for server in reversed(with_stack):
        server.__exit__(None, None, None)


@pytest.fixture
def gateway(start_gateway: Any) -> Running:
    return start_gateway()


def test_exact_usage_with_cached_tokens_and_its_cost(gateway: Running) -> None:
    completion = gateway.client().chat.completions.create(
        model="gpt-4o-mini",
        messages=HI,
        extra_headers={"X-Technoshare-Persona": "stage_a", "X-Technoshare-Stage": "stage_a"},
    )
    assert completion.choices[0].message.content == ANSWER
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2006
    assert completion.usage.prompt_tokens_details and completion.usage.prompt_tokens_details.cached_tokens == 1920
    extra = completion.usage.model_extra or {}
    assert extra["cost_usd"] == pytest.approx(GPT_4O_MINI_COST)
    assert extra["estimated"] is False
    labels = {"model": "gpt-4o-mini", "persona": "stage_a", "stage": "stage_a"}
    assert gateway.metric("technoshare_llm_tokens_total", kind="input", **labels) == 86
    assert gateway.metric("technoshare_llm_tokens_total", kind="cached", **labels) == 1920
    assert gateway.metric("technoshare_llm_tokens_total", kind="output", **labels) == 300
    assert gateway.metric("technoshare_llm_cost_usd_total", **labels) == pytest.approx(GPT_4O_MINI_COST)
    assert gateway.metric("technoshare_llm_requests_total", model="gpt-4o-mini", status="200") == 1
    assert gateway.metric("technoshare_llm_gateway_overhead_seconds_count") == 1
    [request] = gateway.upstream.requests
    assert request["authorization"] == "Bearer sk-upstream-secret"


def test_without_upstream_usage_tiktoken_estimates_and_says_so(gateway: Running) -> None:
    completion = gateway.client().chat.completions.create(model="no-usage", messages=HI)
    assert completion.usage is not None
    assert (completion.usage.model_extra or {})["estimated"] is True
    # "hi" framed as one user message: 3 + 3 + 1 (role) + 1 (content); the answer is 5 tokens in o200k_base.
    assert completion.usage.prompt_tokens == 8
    assert completion.usage.completion_tokens == 5
    assert gateway.metric("technoshare_llm_estimated_usage_total", model="no-usage") == 1


def test_an_unpriced_model_is_reported_not_costed_at_zero(gateway: Running) -> None:
    completion = gateway.client().chat.completions.create(model="mystery-model", messages=HI)
    assert completion.usage is not None
    assert (completion.usage.model_extra or {})["cost_usd"] is None
    assert gateway.metric("technoshare_llm_unpriced_calls_total", model="mystery-model") == 1
    assert gateway.metric("technoshare_llm_cost_usd_total", model="mystery-model") == 0


def test_429_is_retried_after_the_upstreams_retry_after(gateway: Running) -> None:
    start = time.perf_counter()
    completion = gateway.client().chat.completions.create(model="rate-limited", messages=HI)
    assert completion.choices[0].message.content == ANSWER
    assert time.perf_counter() - start >= 1.0  # Retry-After: 1, not the 0.05 s backoff
    assert gateway.upstream.calls["rate-limited"] == 2
    assert gateway.metric("technoshare_llm_retries_total", model="rate-limited", reason="429") == 1


def test_a_500_is_retried_with_backoff_and_then_succeeds(gateway: Running) -> None:
    completion = gateway.client().chat.completions.create(model="flaky", messages=HI)
    assert completion.choices[0].message.content == ANSWER
    assert gateway.upstream.calls["flaky"] == 2
    assert gateway.metric("technoshare_llm_retries_total", model="flaky", reason="500") == 1


def test_a_hanging_upstream_times_out_in_openais_error_format(start_gateway: Any) -> None:
    running = start_gateway(LLM_UPSTREAM_TIMEOUT_SECONDS=0.5, LLM_UPSTREAM_MAX_RETRIES=1)
    running.upstream.hang_seconds = 2.0  # longer than the timeout, short enough for the server to stop soon
    start = time.perf_counter()
    with pytest.raises(openai.InternalServerError) as error:
        running.client().chat.completions.create(model="hang", messages=HI)
    assert time.perf_counter() - start < 5
    assert error.value.status_code == 504
    assert isinstance(error.value.body, dict) and error.value.body["type"] == "timeout_error"
    assert running.upstream.calls["hang"] == 2
    assert running.metric("technoshare_llm_requests_total", model="hang", status="timeout") == 1


def test_client_errors_are_passed_through_and_not_retried(gateway: Running) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        gateway.client().chat.completions.create(model="bad-request", messages=HI)
    assert "bad temperature" in str(error.value)
    assert gateway.upstream.calls["bad-request"] == 1


def test_bad_input_gets_a_clear_openai_error(gateway: Running) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": []},
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "'messages' must be a non-empty list",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
    assert gateway.upstream.requests == []


def test_a_failing_model_falls_back_to_the_next_one(start_gateway: Any) -> None:
    running = start_gateway(LLM_FALLBACK_MODELS={"always-500": ["gpt-4o-mini"]}, LLM_UPSTREAM_MAX_RETRIES=1)
    raw = running.client().chat.completions.with_raw_response.create(model="always-500", messages=HI)
    completion = raw.parse()
    assert completion.model == "gpt-4o-mini"
    assert raw.headers["x-technoshare-fallback-from"] == "always-500"
    assert running.upstream.calls["always-500"] == 2
    assert running.metric("technoshare_llm_fallbacks_total", from_model="always-500", to_model="gpt-4o-mini") == 1
    assert (completion.usage.model_extra or {})["cost_usd"] == pytest.approx(GPT_4O_MINI_COST)  # type: ignore[union-attr]


def test_the_circuit_breaker_stops_calling_a_failing_upstream(start_gateway: Any) -> None:
    running = start_gateway(LLM_UPSTREAM_MAX_RETRIES=0, LLM_BREAKER_FAILURE_THRESHOLD=2, LLM_BREAKER_RESET_SECONDS=60)
    client = running.client()
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="always-500", messages=HI)
    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert refused.value.status_code == 503
    assert refused.value.code == "circuit_open"
    assert refused.value.response.headers["x-should-retry"] == "false"  # callers must not retry into it
    assert running.upstream.calls["gpt-4o-mini"] == 0
    assert running.metric("technoshare_llm_circuit_open", upstream="default") == 1


def test_models_are_routed_to_their_upstream_with_their_own_key(
    start_gateway: Any, upstream: tuple[OpenAIUpstream, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    second = OpenAIUpstream()
    monkeypatch.setenv("LOCAL_LLM_KEY", "local-secret")
    with serve_in_thread(second.app) as second_url:
        upstreams = {
            "openai": {"base_url": f"{upstream[1]}/v1", "kind": "openai", "api_key_env": "OPENAI_API_KEY"},
            "local": {"base_url": f"{second_url}/v1", "kind": "llamacpp", "api_key_env": "LOCAL_LLM_KEY"},
        }
        running = start_gateway(LLM_UPSTREAMS=upstreams, LLM_MODEL_ROUTES={"gpt-": "openai", "smollm2": "local"})
        client = running.client()
        for model in ("gpt-4o-mini", "smollm2-135m-instruct"):
            client.chat.completions.create(model=model, messages=HI, response_format=SCHEMA_FORMAT)  # type: ignore[arg-type]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="claude-3", messages=HI)
        [to_openai] = running.upstream.requests
        [to_local] = second.requests
    assert to_openai["authorization"] == "Bearer sk-upstream-secret"
    assert to_openai["body"]["response_format"]["type"] == "json_schema"
    assert "repeat_penalty" not in to_openai["body"]
    assert to_local["authorization"] == "Bearer local-secret"
    assert to_local["body"]["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    assert to_local["body"]["repeat_penalty"] == 1.3


def test_streams_pass_through_and_are_always_counted(gateway: Running) -> None:
    client = gateway.client()
    pieces, usage_chunks = [], []
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True}
    ):
        pieces.extend(choice.delta.content or "" for choice in chunk.choices)
        if chunk.usage is not None:
            usage_chunks.append(chunk.usage)
    assert "".join(pieces) == ANSWER
    [usage] = usage_chunks
    assert usage.total_tokens == OPENAI_USAGE["total_tokens"]
    assert (usage.model_extra or {})["cost_usd"] == pytest.approx(GPT_4O_MINI_COST)

    # A client that did not ask for usage gets none, but the gateway still asked for it and counted it.
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True))
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert gateway.upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert gateway.metric("technoshare_llm_tokens_total", model="gpt-4o-mini", kind="cached") == 2 * 1920
    assert gateway.metric("technoshare_llm_cost_usd_total", model="gpt-4o-mini") == pytest.approx(2 * GPT_4O_MINI_COST)
    assert gateway.metric("technoshare_llm_time_to_first_token_seconds_count", model="gpt-4o-mini") == 2


def test_a_stream_without_upstream_usage_gets_a_marked_estimate(gateway: Running) -> None:
    chunks = list(
        gateway.client().chat.completions.create(
            model="no-usage", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    [usage] = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert (usage.model_extra or {})["estimated"] is True
    assert usage.prompt_tokens == 8 and usage.completion_tokens == 5


def test_stream_errors_before_the_first_byte_keep_their_status(gateway: Running) -> None:
    with pytest.raises(openai.BadRequestError):
        list(gateway.client().chat.completions.create(model="bad-request", messages=HI, stream=True))


def test_a_persona_budget_refuses_further_calls_with_a_clear_error(start_gateway: Any) -> None:
    # One call costs $0.0003369; the persona's budget allows one, the other persona is unaffected.
    running = start_gateway(LLM_PERSONA_BUDGETS_USD_PER_DAY={"stage_a": 0.0003})
    client = running.client(max_retries=2)
    stage_a = {"X-Technoshare-Persona": "stage_a"}
    client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_headers=stage_a)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_headers=stage_a)
    assert refused.value.code == "budget_exceeded"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert "'stage_a' daily LLM budget of $0.00" in refused.value.message
    assert running.upstream.calls["gpt-4o-mini"] == 1  # refused before the upstream, and the client did not retry
    assert running.metric("technoshare_llm_budget_refusals_total", persona="stage_a", scope="persona") == 1
    client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_headers={"X-Technoshare-Persona": "b"})


def test_the_global_budget_counts_every_persona(start_gateway: Any) -> None:
    running = start_gateway(LLM_BUDGET_USD_PER_DAY=0.0005)
    client = running.client()
    client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_headers={"X-Technoshare-Persona": "a"})
    client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_headers={"X-Technoshare-Persona": "b"})
    with pytest.raises(openai.RateLimitError, match="global daily LLM budget"):
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_headers={"X-Technoshare-Persona": "c"})


async def test_replicas_share_spend_through_the_database(
    upstream: tuple[OpenAIUpstream, str], database_url: str
) -> None:
    """Two gateways on one database: what one spends counts against the other's budget after a sync."""
    settings = gateway_settings(
        upstream[1], LLM_SPEND_DATABASE_URL=database_url, LLM_PERSONA_BUDGETS_USD_PER_DAY={"stage_b": 0.0003}
    )
    first, second = Gateway(settings), Gateway(settings)
    try:
        await achat_with_tracking("gpt-4o-mini", "hi", persona_id="stage_b", gateway=first)
        await first.ledger.sync()
        await second.ledger.sync()
        assert second.ledger.spent("stage_b") == pytest.approx(GPT_4O_MINI_COST)
        with pytest.raises(Exception, match="budget"):
            await achat_with_tracking("gpt-4o-mini", "hi", persona_id="stage_b", gateway=second)
    finally:
        await first.aclose()
        await second.aclose()
    restarted = Gateway(settings)
    await restarted.ledger.sync()
    assert restarted.ledger.spent() == pytest.approx(GPT_4O_MINI_COST)
    await restarted.aclose()


async def test_the_library_door_shares_the_implementation(
    gateway: Running, upstream: tuple[OpenAIUpstream, str]
) -> None:
    http = gateway.client().chat.completions.create(model="gpt-4o-mini", messages=HI)
    library = Gateway(gateway_settings(upstream[1]))
    try:
        tracked = await achat_with_tracking("gpt-4o-mini", "hi", persona_id="stage_a", job_id="j1", gateway=library)
    finally:
        await library.aclose()
    assert tracked.text == http.choices[0].message.content == ANSWER
    assert tracked.cost_usd == pytest.approx((http.usage.model_extra or {})["cost_usd"])  # type: ignore[union-attr]
    assert tracked.usage.cached_tokens == 1920 and tracked.usage.estimated is False
    assert tracked.usage.unpriced_calls == 0
    assert gateway.upstream.requests[-1]["body"]["messages"] == HI


def test_the_sync_library_door_reads_its_settings_from_the_environment(
    upstream: tuple[OpenAIUpstream, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_UPSTREAM_BASE_URL", f"{upstream[1]}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-upstream-secret")
    tracked = chat_with_tracking("o4-mini", "think", persona_id="judge", system="be brief", temperature=0)
    assert tracked.usage.reasoning_tokens == 1600
    assert tracked.cost_usd == pytest.approx((1200 * 1.10 + 1850 * 4.40) / 1e6)
    sent = upstream[0].requests[-1]["body"]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"} and sent["temperature"] == 0
    with pytest.raises(ValueError, match="either"):
        chat_with_tracking("o4-mini", "x", persona_id="judge", messages=HI)


def test_a_wrong_service_token_is_refused(gateway: Running) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert gateway.upstream.requests == []


def test_models_lists_what_the_upstreams_serve(gateway: Running) -> None:
    assert [model.id for model in gateway.client().models.list()] == ["gpt-4o-mini"]


def test_the_llamacpp_dialect_keeps_the_schema_and_adds_a_repeat_penalty() -> None:
    adapted = adapt_request({"model": "m", "messages": [], "response_format": SCHEMA_FORMAT}, "llamacpp", 1.3)
    assert adapted["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    assert adapted["repeat_penalty"] == 1.3
    assert adapt_request({"model": "m", "response_format": SCHEMA_FORMAT}, "openai", 1.3) == {
        "model": "m",
        "response_format": SCHEMA_FORMAT,
    }


async def test_composer_treats_a_spent_budget_as_the_jobs_outcome_not_a_retry(start_gateway: Any) -> None:
    from composer.llm import LLMClient, LLMUnavailable, usage_from
    from composer.settings import ComposerSettings

    running = start_gateway(LLM_PERSONA_BUDGETS_USD_PER_DAY={"stage_b": 0.0})
    llm = LLMClient(ComposerSettings(LLM_GATEWAY_URL=running.url, TECHNOSHARE_INTERNAL_TOKEN=TOKEN))
    try:
        first = await llm.chat(persona="stage_a", model="mystery-model", messages=HI, parameters={})
        with pytest.raises(openai.RateLimitError) as refused:
            await llm.chat(persona="stage_b", model="gpt-4o-mini", messages=HI, parameters={})
    finally:
        await llm.aclose()
    assert not isinstance(refused.value, LLMUnavailable) and refused.value.code == "budget_exceeded"
    assert first.usage.unpriced_calls == 1 and first.usage.cost_usd == 0.0
    assert usage_from({"prompt_tokens": 1, "cost_usd": 0.5}).unpriced_calls == 0


def test_an_upstream_down_leaves_the_gateway_ready_and_shows_in_its_health() -> None:
    """Were it unready, every gateway pod would leave its Service, and composer lose even the fallback upstreams."""
    with serve_in_thread(build_app(gateway_settings("http://127.0.0.1:9"))) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200, ready.text

        def upstreams() -> dict[str, Any] | None:
            found: dict[str, Any] = httpx.get(f"{url}/healthz").json()["dependencies"]
            return found if found and all(v["up"] is not None for v in found.values()) else None

        checked = wait_until(upstreams, 15, 0.05, "the upstream's first check")
        assert list(checked) == ["upstream:default"] and checked["upstream:default"]["up"] is False
