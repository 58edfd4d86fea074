from typing import Annotated

from fastapi import APIRouter, Depends, Request

from poster.service import PosterService
from technoshare_common.auth import Caller, require_caller
from technoshare_common.schemas import ReplyRequest, ReplyResult

router = APIRouter(prefix="/v1", dependencies=[Depends(require_caller(Caller.composer))])


def get_service(request: Request) -> PosterService:
    return request.app.state.poster


@router.post("/replies")
async def replies(body: ReplyRequest, service: Annotated[PosterService, Depends(get_service)]) -> ReplyResult:
    return await service.reply(body)
