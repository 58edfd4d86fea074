"""ingest's application: run with `uvicorn --factory ingest.main:build_app`."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator

from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.ack import AckStore
from ingest.dispatcher import Dispatcher
from ingest.feedback import FeedbackRecorder
from ingest.routers import jobs, slack
from ingest.settings import IngestSettings
from ingest.store import JobStore, QueueStats
from technoshare_common.app import ReadinessCheck, create_app
from technoshare_common.http import ServiceClient
from technoshare_common.schemas import JobState

log = logging.getLogger(__name__)


class JobStoreCollector(Collector):
    """Queue figures from the store, so every ingest replica reports the truth.

    A background task reads them (in a thread) every QUEUE_STATS_SECONDS; a scrape only reports the
    last reading and never waits on the database from the event loop.
    """

    def __init__(self, store: JobStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.stats: QueueStats | None = None

    async def refresh_forever(self) -> None:
        while True:
            try:
                self.stats = await asyncio.to_thread(self.store.queue_stats)
            except Exception as exc:
                self.stats = None  # no figures rather than stale ones; readiness reports the database
                log.warning("reading queue figures failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.interval)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.stats
        if stats is None:
            return
        family = GaugeMetricFamily("technoshare_jobs_by_state", "Jobs in the store, by state.", labels=["state"])
        for state in JobState:
            family.add_metric([state.value], stats.by_state.get(state.value, 0))
        yield family
        yield GaugeMetricFamily(
            "technoshare_jobs_due",
            "Jobs due for dispatch now (queued past their backoff, or with an expired lease).",
            value=stats.due,
        )
        yield GaugeMetricFamily(
            "technoshare_jobs_oldest_due_age_seconds",
            "How long the oldest due job has waited for a dispatcher (0 when none is due).",
            value=stats.oldest_due_age_seconds,
        )


def build_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    store = JobStore(settings.database_url, settings.database_timeouts())
    # The dispatcher owns retries, so the composer client must not retry on its own.
    composer = ServiceClient("composer", settings.composer_url, settings, retries=0)
    dispatcher = Dispatcher(store, settings, composer) if settings.dispatches else None
    collector = JobStoreCollector(store, settings.queue_stats_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create_schema)
        await asyncio.to_thread(store.warm_up, settings.ack_threads)
        app.state.store = store
        app.state.dispatcher = dispatcher
        app.state.ack_store = AckStore(settings, store)
        app.state.feedback = FeedbackRecorder(settings.mlflow_tracking_uri, settings.feedback_reactions)
        # The queue figures are the whole store's: reported where jobs are dispatched, so they are not summed twice.
        if dispatcher is not None:
            REGISTRY.register(collector)
        stats = asyncio.create_task(collector.refresh_forever(), name="queue-stats") if dispatcher else None
        # Everything built so far lives as long as the process: frozen, a full collection no longer walks it. Under
        # load one came every few seconds and held every request in flight (Slack's acks among them) for ~80 ms.
        gc.collect()
        gc.freeze()
        if dispatcher is not None:
            dispatcher.start()
        try:
            yield
        finally:
            if stats is not None:
                stats.cancel()
                REGISTRY.unregister(collector)
            if dispatcher is not None:
                await dispatcher.stop()
            gc.unfreeze()
            app.state.ack_store.shutdown()
            await composer.aclose()
            store.engine.dispose()

    async def job_store_ready() -> None:
        await asyncio.to_thread(store.ping)

    readiness: dict[str, ReadinessCheck] = {"job_store": job_store_ready}
    if dispatcher is not None:
        readiness["dispatcher"] = dispatcher.check_health
    routers = [slack.router] if settings.serves_slack else []
    if settings.dispatches:
        routers.append(jobs.router)
    return create_app(
        service="ingest",
        settings=settings,
        routers=routers,
        readiness=readiness,
        lifespan=lifespan,
        public_paths=slack.PUBLIC_PATHS,
    )
