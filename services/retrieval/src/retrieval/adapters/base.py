from typing import Protocol

from retrieval.fetcher import SafeFetcher
from retrieval.settings import RetrievalSettings
from technoshare_common.schemas import Evidence


class Adapter(Protocol):
    name: str

    def matches(self, url: str) -> bool: ...

    async def evidence(self, url: str) -> Evidence: ...


class AdapterBase:
    name = "Adapter"

    def __init__(self, fetcher: SafeFetcher, settings: RetrievalSettings) -> None:
        self.fetcher = fetcher
        self.settings = settings
