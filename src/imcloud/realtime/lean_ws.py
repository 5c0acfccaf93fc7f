"""uvicorn's wsproto WebSocket protocol, minus what an idle socket need not keep.

A node holds thousands of idle connections (SPEC §9; goal ≤ 20 KiB each). Measured
with tracemalloc, uvicorn's `WSProtocol` keeps per connection: an `asyncio.Queue`
(three deques, ~2.3 KiB, empty nearly always), an `asyncio.Event` for `writable`
(a deque, ~0.8 KiB) and, after the handshake, wsproto's HTTP/1.1 handshake state (an
h11 connection with the upgrade request's headers, ~2–3 KiB) that is never read again,
and the headers again in the ASGI scope (read before accepting, never after).
This subclass swaps in lazy equivalents and drops the finished handshake; the protocol
logic itself — framing, close handshake, pings, flow control — stays uvicorn's.
`imcloud serve` passes it as uvicorn's `ws` protocol class.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Any

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol


class Inbox:
    """The part of `asyncio.Queue` uvicorn's protocol uses; holds nothing while empty."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        assert self._items is not None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items or ())


class Flag(asyncio.Event):
    """An `asyncio.Event` whose waiter list exists only while someone waits."""

    def __init__(self) -> None:
        self._value = False
        self._waiters: deque[asyncio.Future[bool]] | None = None  # type: ignore[assignment]

    async def wait(self) -> bool:  # type: ignore[override]
        if self._value:
            return True
        if self._waiters is None:
            self._waiters = deque()
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
            return True
        finally:
            self._waiters.remove(fut)
            if not self._waiters:
                self._waiters = None

    def set(self) -> None:
        if not self._value:
            self._value = True
            for fut in self._waiters or ():
                if not fut.done():
                    fut.set_result(True)

    def clear(self) -> None:
        self._value = False

    def is_set(self) -> bool:
        return self._value


class _Handshaken:
    """Stands for wsproto's finished handshake: it has no more events to give."""

    __slots__ = ()

    def events(self) -> Iterator[Any]:
        return iter(())


_HANDSHAKEN = _Handshaken()


class LeanWSProtocol(WSProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()
        self.writable.set()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if (message.get("type") == "websocket.accept"
                and getattr(self.conn, "connection", None) is not None):
            self.conn.handshake = _HANDSHAKEN  # type: ignore[assignment]
            # the upgrade request's headers were read before accepting; keep none
            self.scope["headers"] = []
