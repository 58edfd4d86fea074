"""Bearer-token check between services; only ingest's Slack endpoint and probes stay open."""

import hmac

from fastapi import HTTPException, Request, status


async def require_service_token(request: Request) -> None:
    expected: str | None = request.app.state.settings.internal_token_value()
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid service token",
            headers={"WWW-Authenticate": "Bearer"},
        )
