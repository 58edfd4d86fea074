"""Bearer tokens between services; only ingest's Slack endpoint and the probes stay open.

Two modes, chosen by configuration:
- caller tokens (the chart's default): TECHNOSHARE_CALLER_TOKENS maps each caller this service accepts (ingest,
  composer, eval, operator) to that caller's token or its `sha256:` hash (the chart gives hashes), and every route
  names the callers it serves (`require_caller`). A caller this service accepts, on a route not meant for it,
  gets 403; any other token 401. A compromised pod holds only its own token, which opens only the routes its
  service needs.
- a shared token (local runs, older deployments): TECHNOSHARE_INTERNAL_TOKEN alone, accepted on every route.
With neither set, the check is off (local only; the app warns at start).
"""

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from enum import StrEnum

from fastapi import HTTPException, Request, status


class Caller(StrEnum):
    ingest = "ingest"  # hands jobs to composer
    composer = "composer"  # calls retrieval, llm-gateway, poster, and ingest's job API
    eval = "eval"  # the evaluation CronJob: composer's dry run, the gateway's judge
    operator = "operator"  # people and `helm test`: the read APIs and dry runs


def _matches(token: str, expected: str) -> bool:
    """`expected` is the token, or `sha256:<hex>` of it: a service that only checks a caller's token needs no more,
    and then cannot present it."""
    if expected.startswith("sha256:"):
        return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest().encode(), expected[7:].encode())
    return hmac.compare_digest(token.encode(), expected.encode())


def _presented(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail="missing or invalid service token", headers={"WWW-Authenticate": "Bearer"}
    )


def require_caller(*allowed: Caller) -> Callable[[Request], Awaitable[None]]:
    """A route dependency: only the given callers may call it (with caller tokens configured)."""

    async def check(request: Request) -> None:
        settings = request.app.state.settings
        token = _presented(request)
        callers = settings.caller_token_values()
        if callers:
            who = next((caller for caller, expected in callers.items() if token and _matches(token, expected)), None)
            if who is None:
                raise _unauthorized()
            if who not in allowed:
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"{who} may not call this route")
            return
        expected = settings.internal_token_value()
        if expected is not None and (token is None or not _matches(token, expected)):
            raise _unauthorized()

    return check
