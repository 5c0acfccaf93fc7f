"""The broker carries events between nodes: in-process (one node) or Redis pub/sub.

One channel per app: a node subscribes to the apps it has sessions for, so a message
reaches exactly the nodes that may have recipients. Notices that concern every node
(an app changed or was disabled) go on one shared channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson

from imcloud.events import Event

log = logging.getLogger("imcloud.broker")

Handler = Callable[[Event], Awaitable[None]]
ALL = "imcloud:all"


def app_channel(sdkappid: int) -> str:
    return f"imcloud:app:{sdkappid}"


class Broker(Protocol):
    async def start(self, handler: Handler) -> None: ...
    async def publish(self, channel: str, event: Event) -> None: ...
    async def subscribe(self, channel: str) -> None: ...
    async def unsubscribe(self, channel: str) -> None: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class MemoryBroker:
    """One node: events go straight to this node's handler."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.channels: set[str] = {ALL}

    async def start(self, handler: Handler) -> None:
        self.handler = handler

    async def publish(self, channel: str, event: Event) -> None:
        if self.handler is not None and channel in self.channels:
            await self.handler(event)

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.handler = None


class RedisBroker:
    """Several nodes: Redis pub/sub (redis-py asyncio)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.redis = redis.from_url(url)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.task: asyncio.Task[None] | None = None
        self.handler: Handler | None = None

    async def start(self, handler: Handler) -> None:
        """Subscribe and listen; a Redis that is down does not stop the node from
        starting (it is not ready, /readyz says so) — the listener keeps trying."""
        self.handler = handler
        try:
            await self.pubsub.subscribe(ALL)
        except Exception as e:
            log.warning("redis broker unreachable (%s); retrying", e)
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                if not self.pubsub.subscribed:
                    await self.pubsub.subscribe(ALL)
                async for message in self.pubsub.listen():
                    delay = 0.5
                    if message.get("type") != "message" or self.handler is None:
                        continue
                    try:
                        await self.handler(orjson.loads(message["data"]))
                    except Exception:
                        log.exception("event handler failed")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("redis broker unreachable (%s); retrying in %g s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def publish(self, channel: str, event: Event) -> None:
        await self.redis.publish(channel, orjson.dumps(event))

    async def subscribe(self, channel: str) -> None:
        await self.pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self.pubsub.unsubscribe(channel)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.redis.aclose()


async def broadcast(url: str, events: list[Event]) -> None:
    """Publish from a process that is not a node (the CLI)."""
    broker = from_url(url)
    try:
        for ev in events:
            channel = ALL if ev["kind"] == "app_changed" else app_channel(ev["sdkappid"])
            await broker.publish(channel, ev)
    finally:
        await broker.close()


def from_url(url: str | None) -> Broker:
    if not url or url == "memory://":
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url)
    raise ValueError(f"unknown broker URL {url!r} (memory:// or redis://...)")
