"""The ASGI entry of `imcloud serve`: the two hot paths skip the framework.

`/v4/...` (every backend call) and `/v1/ws` (every open socket) go straight to their
dispatchers; everything else — the console, /openapi.json, operations — goes through
FastAPI. Through the router and middleware stack a v4 call paid about as much again as
its own work, and every idle socket kept tens of KiB of frames alive. The v4 routes
stay registered on the FastAPI app, so the OpenAPI schema still documents them.

Every request and socket gets its request id here (ops/logs.py): set for the logs of
everything it runs, echoed in the HTTP response's `X-Request-Id`.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request

from imcloud.api import v4
from imcloud.ops import logs
from imcloud.realtime.gateway import Socket, gateway

REQUEST_ID = b"x-request-id"


class FastPath:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        rid = logs.request_id_of(scope)
        token = logs.REQUEST_ID.set(rid)
        try:
            path = scope.get("path", "")
            if kind == "http" and path.startswith("/v4/"):
                scope["app"] = self.app
                parts = path[len("/v4/"):].split("/")
                service, name = (parts[0], parts[1]) if len(parts) == 2 else ("", "/".join(parts))
                response = await v4.dispatch(Request(scope, receive), service, name)
                response.raw_headers.append((REQUEST_ID, rid.encode()))
                await response(scope, receive, send)
            elif kind == "websocket" and path == "/v1/ws":
                scope["app"] = self.app
                await gateway(Socket(scope, receive, send))
            elif kind == "http":
                await self._http(scope, receive, send, rid.encode())
            else:
                await self.app(scope, receive, send)
        finally:
            logs.REQUEST_ID.reset(token)

    async def _http(self, scope: Any, receive: Any, send: Any, rid: bytes) -> None:
        started = time.perf_counter()
        status = 500  # if the app fails before it answers, uvicorn answers 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.http_line(scope.get("method", ""), scope.get("path", ""), status,
                           time.perf_counter() - started)
