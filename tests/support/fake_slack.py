"""A local Slack Web API: the methods poster calls, answered as Slack does, driven by slack_sdk."""

import itertools
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

VALID_TOKEN = "xoxb-test-token"
MISSING_CHANNEL = "C0MISSING"


class FakeSlack:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reactions: list[tuple[str, str, str]] = []  # (channel, message ts, emoji name), the bot's own
        self.calls: list[str] = []
        self.rate_limit_next = 0
        self.lock = threading.Lock()
        self._ts = itertools.count(1)
        self.app = self._build()

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.reactions.clear()
            self.calls.clear()
            self.rate_limit_next = 0

    def replies_in(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["channel"] == channel and m.get("thread_ts") == thread_ts]

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
        async def api(method: str, request: Request) -> JSONResponse:
            args = await params(request)
            with self.lock:
                self.calls.append(method)
                if request.headers.get("authorization") != f"Bearer {VALID_TOKEN}":
                    return JSONResponse({"ok": False, "error": "invalid_auth"})
                if self.rate_limit_next > 0:
                    self.rate_limit_next -= 1
                    return JSONResponse(
                        {"ok": False, "error": "ratelimited"}, status_code=429, headers={"Retry-After": "1"}
                    )
                if method == "chat.postMessage":
                    return JSONResponse(self._post(args))
                if method == "reactions.add":
                    return JSONResponse(self._react(args))
                if method == "conversations.replies":
                    return JSONResponse(self._replies(args))
                if method == "auth.test":
                    return JSONResponse({"ok": True, "user_id": "U0BOT", "bot_id": "B0BOT"})
            return JSONResponse({"ok": False, "error": "unknown_method"})

        return app

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel") == MISSING_CHANNEL:
            return {"ok": False, "error": "channel_not_found"}
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
