"""One adapter per kind of link; the first whose `matches` accepts the URL reads it."""

from retrieval.adapters.arxiv import ArxivAdapter
from retrieval.adapters.base import Adapter
from retrieval.adapters.generic import GenericPageAdapter
from retrieval.adapters.github import GitHubAdapter

__all__ = ["Adapter", "ArxivAdapter", "GenericPageAdapter", "GitHubAdapter"]
