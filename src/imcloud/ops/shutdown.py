"""Graceful shutdown of `imcloud serve` (SIGTERM, SIGINT): drain WebSockets, then stop.

uvicorn on its own closes every socket at once (1012) and drops what sessions still
have queued. Here, first the listening sockets close (a load balancer sends new
connections elsewhere); then each WebSocket session, as soon as what was queued for
it has gone out, is closed with 1012 "service restart" — clients reconnect (to another
node, or this one restarted) and resume by sequence, so nothing is lost or repeated —
and only then does uvicorn finish in-flight HTTP requests and the app's own shutdown.
Each phase is bounded, so the process exits within about `shutdown_seconds`, with
status 0: a requested stop is a normal end.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

import uvicorn

log = logging.getLogger("imcloud.shutdown")

CLOSE_RESTART = 1012  # RFC 6455 "service restart": reconnect and resume
POLL = 0.01


async def drain(hub: Any, seconds: float) -> dict[str, int]:
    """Close every session of the hub once its queue has gone out (or at the deadline),
    with 1012; wait (bounded) for the close frames to be sent."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    sessions = [s for group in list(hub.by_user.values()) for s in list(group)]
    pending = list(sessions)
    flushed = 0
    while pending:
        late = loop.time() >= deadline
        still = []
        for s in pending:
            if s.closed:
                continue
            if late or (not s.outbox and not s.draining):
                if not late:
                    flushed += 1
                s.shut(CLOSE_RESTART, "server restarting; reconnect and resume by sequence")
            else:
                still.append(s)
        pending = still
        if pending:
            await asyncio.sleep(POLL)
    closing = [s.closing for s in sessions if s.closing is not None]
    if closing:
        await asyncio.wait(closing, timeout=max(0.1, deadline - loop.time()))
    result = {"sessions": len(sessions), "flushed": flushed, "cut_short": len(sessions) - flushed}
    log.info(
        "drained %d WebSocket sessions (%d with their queue sent)",
        len(sessions),
        flushed,
        extra=result,
    )
    return result


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining the app's WebSockets before its own shutdown."""

    def __init__(self, config: uvicorn.Config, app: Any, drain_seconds: float):
        super().__init__(config)
        self.imcloud_app = app
        self.drain_seconds = drain_seconds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # stop accepting first
            server.close()
        hub = getattr(self.imcloud_app.state, "hub", None)
        if hub is not None:
            log.info(
                "stopping: no new connections; draining WebSocket sessions for at most %g s",
                self.drain_seconds,
            )
            try:
                await drain(hub, self.drain_seconds)
            except Exception:  # never let a failed drain keep the process up
                log.exception("draining WebSockets failed")
        await super().shutdown(sockets)


def exit_zero_on_sigterm() -> None:
    """uvicorn re-raises the signal it stopped on, once it has stopped, with the handler
    it found; this one makes that a no-op, so a drained SIGTERM exits with status 0."""
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
