"""Objects the routers share, held on app.state and built in main's lifespan.

Coroutines, not plain functions: FastAPI runs a plain dependency in a worker thread, and those hops
were a measurable part of Slack's ack time under load.
"""

from fastapi import Request

from ingest.ack import AckStore
from ingest.dispatcher import Dispatcher
from ingest.feedback import FeedbackRecorder
from ingest.settings import IngestSettings
from ingest.store import JobStore


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_dispatcher(request: Request) -> Dispatcher | None:
    """None in an acks-only ingest: another process dispatches, polling the store."""
    return request.app.state.dispatcher


async def get_settings(request: Request) -> IngestSettings:
    return request.app.state.settings


async def get_feedback(request: Request) -> FeedbackRecorder:
    return request.app.state.feedback


async def get_ack_store(request: Request) -> AckStore:
    return request.app.state.ack_store
