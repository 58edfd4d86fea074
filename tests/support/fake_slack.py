"""A local Slack Web API: the methods poster calls, answered as Slack does, driven by slack_sdk.

Faults are queued with `inject`: each is served to the next call of its method, in order, so any test can make
Slack answer late, drop the connection, rate-limit, fail with a 5xx or refuse a long message."""

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

VALID_TOKEN = "xoxb-test-token"
MISSING_CHANNEL = "C0MISSING"


class FaultKind(StrEnum):
    late = "late"  # the call takes effect, its answer comes after `delay` seconds
    accepted_late = "accepted_late"  # the call takes effect only after `delay` seconds (the client may have gone)
    reset = "reset"  # the call takes effect, the connection drops in the middle of the answer
    rate_limited = "rate_limited"  # 429 with Retry-After: nothing happens
    server_error = "server_error"  # a 5xx; the call takes effect first when `accept` is set
    msg_too_long = "msg_too_long"  # chat.postMessage refuses the message


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    method: str = "chat.postMessage"
    delay: float = 0.0
    retry_after: int = 1
    status: int = 503
    accept: bool = True


class _DroppedAnswer(Response):
    """Starts a JSON answer and breaks off: uvicorn closes the connection, the client reads a truncated body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": tr', "more_body": True})
        raise ConnectionResetError("fake Slack dropped the connection")


class FakeSlack:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reactions: list[tuple[str, str, str]] = []  # (channel, message ts, emoji name), the bot's own
        self.calls: list[str] = []
        self.faults: list[Fault] = []
        self.max_text_chars: int | None = None  # a longer chat.postMessage text gets msg_too_long
        self.lock = threading.Lock()
        self._ts = itertools.count(1)
        self.app = self._build()

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.reactions.clear()
            self.calls.clear()
            self.faults.clear()
            self.max_text_chars = None

    def inject(self, fault: Fault, times: int = 1) -> None:
        with self.lock:
            self.faults.extend([fault] * times)

    def replies_in(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["channel"] == channel and m.get("thread_ts") == thread_ts]

    def _next_fault(self, method: str) -> Fault | None:
        for index, fault in enumerate(self.faults):
            if fault.method == method:
                return self.faults.pop(index)
        return None

    def _build(self) -> FastAPI:
        app = FastAPI()

        async def params(request: Request) -> dict[str, Any]:
            values: dict[str, Any] = dict(request.query_params)
            if request.method == "POST":
                if request.headers.get("content-type", "").startswith("application/json"):
                    values |= await request.json()
                else:
                    values |= dict(parse_qsl((await request.body()).decode()))
            return values

        @app.api_route("/api/{method}", methods=["GET", "POST"])
        async def api(method: str, request: Request) -> Response:
            args = await params(request)
            with self.lock:
                self.calls.append(method)
                if request.headers.get("authorization") != f"Bearer {VALID_TOKEN}":
                    return JSONResponse({"ok": False, "error": "invalid_auth"})
                fault = self._next_fault(method)
                if fault is not None and fault.kind == FaultKind.rate_limited:
                    return JSONResponse(
                        {"ok": False, "error": "ratelimited"},
                        status_code=429,
                        headers={"Retry-After": str(fault.retry_after)},
                    )
                if fault is not None and fault.kind == FaultKind.msg_too_long:
                    return JSONResponse({"ok": False, "error": "msg_too_long"})
                if fault is not None and fault.kind == FaultKind.server_error and not fault.accept:
                    return Response("upstream connect error", status_code=fault.status)
                if fault is None or fault.kind != FaultKind.accepted_late:
                    answer = self._call(method, args)
            if fault is not None and fault.kind == FaultKind.accepted_late:
                await asyncio.sleep(fault.delay)  # the fault itself: Slack takes the call this late
                with self.lock:
                    answer = self._call(method, args)
                return JSONResponse(answer)
            if fault is None:
                return JSONResponse(answer)
            if fault.kind == FaultKind.late:
                await asyncio.sleep(fault.delay)  # the fault itself: Slack took the call and answers this late
                return JSONResponse(answer)
            if fault.kind == FaultKind.reset:
                return _DroppedAnswer()
            return Response("upstream request timeout", status_code=fault.status)

        return app

    def _call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "chat.postMessage":
            return self._post(args)
        if method == "reactions.add":
            return self._react(args)
        if method == "conversations.replies":
            return self._replies(args)
        if method == "auth.test":
            return {"ok": True, "user_id": "U0BOT", "bot_id": "B0BOT"}
        return {"ok": False, "error": "unknown_method"}

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel") == MISSING_CHANNEL:
            return {"ok": False, "error": "channel_not_found"}
        if self.max_text_chars is not None and len(str(args.get("text") or "")) > self.max_text_chars:
            return {"ok": False, "error": "msg_too_long"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        message = {
            "channel": args["channel"],
            "thread_ts": args.get("thread_ts"),
            "text": args.get("text"),
            "blocks": args.get("blocks"),
            "metadata": args.get("metadata"),
            "ts": ts,
            "bot_id": "B0BOT",
        }
        self.messages.append(message)
        return {"ok": True, "channel": args["channel"], "ts": ts, "message": message}

    def _react(self, args: dict[str, Any]) -> dict[str, Any]:
        """Slack refuses the same reaction twice from one user on one message with `already_reacted`."""
        if args.get("channel") == MISSING_CHANNEL:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("timestamp") or not args.get("name"):
            return {"ok": False, "error": "invalid_arguments"}
        reaction = (str(args["channel"]), str(args["timestamp"]), str(args["name"]))
        if reaction in self.reactions:
            return {"ok": False, "error": "already_reacted"}
        self.reactions.append(reaction)
        return {"ok": True}

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        found = [
            m for m in self.messages if m["channel"] == args.get("channel") and m.get("thread_ts") == args.get("ts")
        ]
        return {"ok": True, "messages": found, "has_more": False, "response_metadata": {"next_cursor": ""}}
