"""Chooses the adapter for a link and records what retrieval did."""

import time

from prometheus_client import Counter, Histogram

from retrieval.adapters import Adapter, ArxivAdapter, GenericPageAdapter, GitHubAdapter
from retrieval.fetcher import FetchError, SafeFetcher
from retrieval.settings import RetrievalSettings
from technoshare_common.schemas import Evidence, SearchRequest, SearchResponse, Source

EVIDENCE_REQUESTS = Counter(
    "technoshare_retrieval_requests_total",
    "Evidence requests, by adapter and result (coverage, or the kind of failure).",
    ["adapter", "result"],
)
EVIDENCE_LATENCY = Histogram(
    "technoshare_retrieval_latency_seconds",
    "Time to build evidence for one link, by adapter.",
    ["adapter"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30),
)


class RetrievalService:
    def __init__(self, settings: RetrievalSettings, fetcher: SafeFetcher | None = None) -> None:
        self.settings = settings
        self.fetcher = fetcher or SafeFetcher(settings)
        self.arxiv = ArxivAdapter(self.fetcher, settings)
        self.adapters: list[Adapter] = [
            self.arxiv,
            GitHubAdapter(self.fetcher, settings),
            GenericPageAdapter(self.fetcher, settings),
        ]

    def adapter_for(self, url: str) -> Adapter:
        return next(a for a in self.adapters if a.matches(url))

    async def evidence(self, url: str) -> Evidence:
        adapter = self.adapter_for(url)
        start = time.perf_counter()
        try:
            evidence = await adapter.evidence(url)
        except FetchError as exc:
            EVIDENCE_REQUESTS.labels(adapter.name, exc.kind).inc()
            raise
        finally:
            EVIDENCE_LATENCY.labels(adapter.name).observe(time.perf_counter() - start)
        EVIDENCE_REQUESTS.labels(adapter.name, evidence.coverage.value).inc()
        return evidence

    async def search(self, request: SearchRequest) -> SearchResponse:
        if request.url is not None:
            evidence = await self.evidence(str(request.url))
            return SearchResponse(
                sources=[Source(url=s.url, title=s.title, role="search") for s in evidence.sources],
                snippets=evidence.snippets[: request.max_results],
            )
        assert request.query is not None
        sources, snippets = await self.arxiv.search(request.query, request.max_results)
        return SearchResponse(sources=sources, snippets=snippets)

    async def aclose(self) -> None:
        await self.fetcher.aclose()
