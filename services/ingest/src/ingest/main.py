"""ingest's application: run with `uvicorn --factory ingest.main:build_app`."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.dispatcher import Dispatcher
from ingest.feedback import FeedbackRecorder
from ingest.routers import jobs, slack
from ingest.settings import IngestSettings
from ingest.store import JobStore
from technoshare_common.app import create_app
from technoshare_common.http import ServiceClient
from technoshare_common.schemas import JobState


class JobStoreCollector(Collector):
    """Queue depth read from the store at scrape time, so every ingest replica reports the truth."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("technoshare_jobs_by_state", "Jobs in the store, by state.", labels=["state"])
        try:
            counts = self.store.count_by_state()
        except Exception:
            return
        for state in JobState:
            family.add_metric([state.value], counts.get(state.value, 0))
        yield family


def build_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    store = JobStore(settings.database_url)
    # The dispatcher owns retries, so the composer client must not retry on its own.
    composer = ServiceClient("composer", settings.composer_url, settings, retries=0)
    dispatcher = Dispatcher(store, settings, composer)
    collector = JobStoreCollector(store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create_schema)
        app.state.store = store
        app.state.dispatcher = dispatcher
        app.state.feedback = FeedbackRecorder(settings.mlflow_tracking_uri)
        REGISTRY.register(collector)
        task = asyncio.create_task(dispatcher.run())
        try:
            yield
        finally:
            REGISTRY.unregister(collector)
            await dispatcher.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await composer.aclose()
            store.engine.dispose()

    async def job_store_ready() -> None:
        await asyncio.to_thread(store.ping)

    return create_app(
        service="ingest",
        settings=settings,
        routers=[slack.router, jobs.router],
        readiness={"job_store": job_store_ready},
        lifespan=lifespan,
    )
