from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request

from retrieval.fetcher import FetchError
from retrieval.service import RetrievalService
from technoshare_common.auth import Caller, require_caller
from technoshare_common.schemas import Evidence, EvidenceRequest, SearchRequest, SearchResponse

router = APIRouter(prefix="/v1", dependencies=[Depends(require_caller(Caller.composer, Caller.operator))])


def get_service(request: Request) -> RetrievalService:
    return request.app.state.retrieval


def _unprocessable(exc: FetchError) -> HTTPException:
    """422 with an UnreadableLink as `detail`: the link cannot be read (technoshare_common.schemas)."""
    return HTTPException(422, detail=exc.body().model_dump(mode="json"))


@router.post("/evidence")
async def evidence(body: EvidenceRequest, service: Annotated[RetrievalService, Depends(get_service)]) -> Evidence:
    try:
        return await service.evidence(str(body.url))
    except FetchError as exc:
        raise _unprocessable(exc) from exc


@router.post("/search")
async def search(body: SearchRequest, service: Annotated[RetrievalService, Depends(get_service)]) -> SearchResponse:
    try:
        return await service.search(body)
    except FetchError as exc:
        raise _unprocessable(exc) from exc
