"""Objects the routers share, held on app.state and built in main's lifespan.

Coroutines, not plain functions: FastAPI runs a plain dependency in a worker thread, and those hops
were a measurable part of Slack's ack time under load.
"""

from fastapi import Request

from ingest.store import JobStore


async def get_store(request: Request) -> JobStore:
    return request.app.state.store
