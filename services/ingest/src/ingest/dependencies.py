"""Objects the routers share, held on app.state and built in main's lifespan."""

from fastapi import Request

from ingest.dispatcher import Dispatcher
from ingest.feedback import FeedbackRecorder
from ingest.settings import IngestSettings
from ingest.store import JobStore


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def get_settings(request: Request) -> IngestSettings:
    return request.app.state.settings


def get_feedback(request: Request) -> FeedbackRecorder:
    return request.app.state.feedback
