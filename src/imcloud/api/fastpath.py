"""The ASGI entry of `imcloud serve`: the two hot paths skip the framework.

`/v4/...` (every backend call) and `/v1/ws` (every open socket) go straight to their
dispatchers; everything else — the console, /openapi.json, operations — goes through
FastAPI. Through the router and middleware stack a v4 call paid about as much again as
its own work, and every idle socket kept tens of KiB of frames alive. The v4 routes
stay registered on the FastAPI app, so the OpenAPI schema still documents them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from imcloud.api import v4
from imcloud.realtime.gateway import Socket, gateway


class FastPath:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/v4/"):
            scope["app"] = self.app
            parts = path[len("/v4/"):].split("/")
            service, name = (parts[0], parts[1]) if len(parts) == 2 else ("", "/".join(parts))
            response = await v4.dispatch(Request(scope, receive), service, name)
            await response(scope, receive, send)
            return
        if scope["type"] == "websocket" and path == "/v1/ws":
            scope["app"] = self.app
            await gateway(Socket(scope, receive, send))
            return
        await self.app(scope, receive, send)
