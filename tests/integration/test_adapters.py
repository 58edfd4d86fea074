"""The adapters against local servers speaking arXiv's export API, GitHub's REST API and HTML."""

import pytest

from retrieval.adapters.arxiv import arxiv_id
from retrieval.adapters.github import repository
from retrieval.service import RetrievalService
from retrieval.settings import RetrievalSettings
from scripts import sample_site
from technoshare_common.schemas import Coverage, SearchRequest
from tests.support.servers import serve_in_thread


@pytest.fixture(scope="module")
def samples() -> str:  # type: ignore[misc]
    with serve_in_thread(sample_site.app) as url:
        yield url


@pytest.fixture
def service(samples: str) -> RetrievalService:
    return RetrievalService(
        RetrievalSettings(
            ARXIV_API_URL=f"{samples}/arxiv/api/query",
            GITHUB_API_URL=f"{samples}/github",  # type: ignore[arg-type]
            RETRIEVAL_ALLOWED_HOSTS="127.0.0.1",
            MAX_EVIDENCE_CHARS=5000,
        )
    )


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://arxiv.org/abs/2106.09685", "2106.09685"),
        ("https://arxiv.org/pdf/2106.09685v2.pdf", "2106.09685v2"),
        ("https://arxiv.org/abs/cs/0601001", "cs/0601001"),
        ("https://example.org/abs/2106.09685", None),
    ],
)
def test_arxiv_ids(url: str, expected: str | None) -> None:
    assert arxiv_id(url) == expected


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://github.com/pallets/flask", ("pallets", "flask")),
        ("https://github.com/pallets/flask.git", ("pallets", "flask")),
        ("https://github.com/pallets/flask/tree/main/src", ("pallets", "flask")),
        ("https://github.com/orgs/pallets", None),
        ("https://gitlab.com/pallets/flask", None),
    ],
)
def test_github_repositories(url: str, expected: tuple[str, str] | None) -> None:
    assert repository(url) == expected


async def test_arxiv_evidence_is_the_real_abstract(service: RetrievalService) -> None:
    evidence = await service.evidence("https://arxiv.org/abs/2106.09685")
    assert evidence.adapter_name == "ArxivAdapter"
    assert evidence.title == "LoRA: Low-Rank Adaptation of Large Language Models"
    assert evidence.coverage == Coverage.partial  # an abstract, not the paper
    assert "Edward J. Hu" in evidence.authors and "low-rank" in evidence.text.lower()
    assert [s.url for s in evidence.sources] == [
        "https://arxiv.org/abs/2106.09685v1",
        "https://arxiv.org/pdf/2106.09685v1",
    ]
    assert evidence.snippets


async def test_github_evidence_is_metadata_and_readme(service: RetrievalService) -> None:
    evidence = await service.evidence("https://github.com/karpathy/nanoGPT")
    assert evidence.adapter_name == "GitHubAdapter"
    assert evidence.final_url == "https://github.com/karpathy/nanoGPT"
    assert "nanoGPT" in evidence.text and "![" not in evidence.text  # badges and images stripped
    assert evidence.coverage == Coverage.partial and evidence.truncated  # README over the 5000-char cap


async def test_a_generic_page_is_extracted_with_trafilatura(service: RetrievalService, samples: str) -> None:
    evidence = await service.evidence(f"{samples}/web/go-swisstable.html")
    assert evidence.adapter_name == "GenericPageAdapter"
    assert evidence.title == "Faster Go maps with Swiss Tables"
    assert "hash table" in evidence.text and "Home | Docs | Blog" not in evidence.text
    assert evidence.coverage == Coverage.partial and len(evidence.snippets) >= 3


async def test_search_finds_arxiv_papers_by_query(service: RetrievalService) -> None:
    found = await service.search(SearchRequest(query="diffusion", max_results=3))
    assert 1 <= len(found.sources) <= 3 and all(s.role == "search" for s in found.sources)
    assert any("diffusion" in s.text.lower() for s in found.snippets)
