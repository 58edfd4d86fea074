"""The gateway's Prometheus metrics. Labels stay bounded: models, personas and stages are capped, no job ids."""

import threading

from prometheus_client import Counter, Gauge, Histogram

OTHER = "other"

LLM_REQUESTS = Counter(
    "technoshare_llm_requests_total", "LLM calls by requested model and final status.", ["model", "status"]
)
LLM_TOKENS = Counter(
    "technoshare_llm_tokens_total",
    "Tokens by model, kind (input, cached, output, reasoning), persona and stage.",
    ["model", "kind", "persona", "stage"],
)
LLM_COST = Counter(
    "technoshare_llm_cost_usd_total", "Cost in USD by model, persona and stage.", ["model", "persona", "stage"]
)
LLM_ESTIMATED_CALLS = Counter(
    "technoshare_llm_estimated_usage_total", "Calls whose usage was estimated with tiktoken.", ["model"]
)
LLM_UNPRICED_CALLS = Counter(
    "technoshare_llm_unpriced_calls_total", "Calls to a model missing from the price table.", ["model"]
)
LLM_RETRIES = Counter("technoshare_llm_retries_total", "Upstream retries by model and reason.", ["model", "reason"])
LLM_FALLBACKS = Counter(
    "technoshare_llm_fallbacks_total", "Calls moved to a fallback model.", ["from_model", "to_model"]
)
LLM_BUDGET_REFUSALS = Counter(
    "technoshare_llm_budget_refusals_total", "Calls refused by a daily budget.", ["persona", "scope"]
)
LLM_CIRCUIT_OPEN = Gauge("technoshare_llm_circuit_open", "1 while an upstream's circuit breaker is open.", ["upstream"])
LLM_SPEND_TODAY = Gauge("technoshare_llm_spend_usd_today", "Spend so far today (UTC) by persona.", ["persona"])
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
LLM_UPSTREAM_LATENCY = Histogram(
    "technoshare_llm_upstream_latency_seconds",
    "Upstream latency of one attempt, by model.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
LLM_TIME_TO_FIRST_TOKEN = Histogram(
    "technoshare_llm_time_to_first_token_seconds",
    "Streams: time to the first content chunk.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
LLM_GATEWAY_OVERHEAD = Histogram(
    "technoshare_llm_gateway_overhead_seconds",
    "Time a call spent in the gateway itself, outside upstream attempts and retry waits.",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
)


class BoundedLabel:
    """Keeps at most `limit` distinct values of a client-chosen label; the rest are counted as "other"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        value = (value or "unknown")[:80]
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return OTHER
