"""Sliding-window rate limiters: in-process (one node) or Redis (several nodes).

A limiter admits at most `limit` events per key in any `window` seconds. It keeps the
times of the events it admitted within the last window (a sliding-window log): exact,
with no double burst at a fixed window's edge, so "at most N in any second" is a
statement a test can check. A refused event is not recorded (a client that keeps
retrying does not lock itself out), and an admitted one may be given back when the
work it was for is refused, so refused work spends nothing.

In-process, the log is a deque per key. With Redis it is a sorted set per key, read
and written by one Lua script that takes the time from Redis itself, so nodes whose
clocks disagree still share one window. If Redis cannot be reached, each node limits
on its own until it can (logged): a limiter outage must not stop an app's traffic.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("imcloud.ratelimit")

WINDOW = 1.0  # seconds: every limit of SPEC §7 is "per second"


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted event, so that it can be given back."""

    key: str
    mark: float | str  # its time in the in-process log, or its member of the Redis set


class Limiter(Protocol):
    remote: bool  # whether take() waits for the network (never inside a SQLite write)

    async def take(self, key: str, limit: int) -> Ticket | None: ...
    async def give_back(self, ticket: Ticket) -> None: ...
    async def close(self) -> None: ...


class Log:
    """The pure rule: the admitted times per key within the last `window` (time passed in)."""

    def __init__(self, window: float = WINDOW):
        self.window = window
        self.times: dict[str, deque[float]] = {}
        self.swept = 0.0

    def take(self, key: str, limit: int, now: float) -> bool:
        self._sweep(now)
        times = self.times.get(key)
        if times is None:
            times = self.times[key] = deque()
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        return True

    def give_back(self, key: str, at: float) -> None:
        times = self.times.get(key)
        if times is not None and at in times:
            times.remove(at)

    def _sweep(self, now: float) -> None:
        """Forget keys with nothing in their window, every few windows (groups come and go)."""
        if now - self.swept < 10 * self.window:
            return
        self.swept = now
        horizon = now - self.window
        for key in [k for k, t in self.times.items() if not t or t[-1] <= horizon]:
            del self.times[key]


class LocalLimiter:
    """One process: the log in memory. take() never yields to the event loop, so it may
    run inside any transaction."""

    remote = False

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic):
        self.log = Log(window)
        self.clock = clock

    async def take(self, key: str, limit: int) -> Ticket | None:
        now = self.clock()
        return Ticket(key, now) if self.log.take(key, limit, now) else None

    async def give_back(self, ticket: Ticket) -> None:
        if isinstance(ticket.mark, float):
            self.log.give_back(ticket.key, ticket.mark)

    async def close(self) -> None:
        pass


# KEYS[1] the key's sorted set; ARGV: limit, window (µs), the new member. 1 = admitted.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return 1
"""
PREFIX = "imcloud:rate:"
RETRY_AFTER = 1.0  # seconds a node limits on its own after Redis failed it


class RedisLimiter:
    """Several nodes: one log per key in Redis, decided atomically by a Lua script."""

    remote = True

    def __init__(self, url: str, window: float = WINDOW):
        import redis.asyncio as redis

        self.redis = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.script: Any = self.redis.register_script(_TAKE)
        self.window_us = int(window * 1_000_000)
        self.node = secrets.token_hex(6)
        self.serial = itertools.count()
        self.fallback = LocalLimiter(window)
        self.down_until = 0.0

    async def take(self, key: str, limit: int) -> Ticket | None:
        if time.monotonic() < self.down_until:
            return await self.fallback.take(key, limit)
        member = f"{self.node}:{next(self.serial)}"
        try:
            admitted = await self.script(keys=[PREFIX + key], args=[limit, self.window_us, member])
        except Exception as e:
            log.warning(
                "rate limits are per node for %.0f s: Redis failed (%s)",
                RETRY_AFTER,
                type(e).__name__,
            )
            self.down_until = time.monotonic() + RETRY_AFTER
            return await self.fallback.take(key, limit)
        return Ticket(key, member) if admitted == 1 else None

    async def give_back(self, ticket: Ticket) -> None:
        if isinstance(ticket.mark, float):
            await self.fallback.give_back(ticket)
            return
        try:
            await self.redis.zrem(PREFIX + ticket.key, ticket.mark)
        except Exception as e:  # the place frees itself when the window passes
            log.warning("could not give back a rate-limit place: %s", type(e).__name__)

    async def close(self) -> None:
        await self.redis.aclose()


def from_url(url: str | None) -> Limiter:
    """In-process for no URL or memory://, Redis for redis://, rediss://, unix://."""
    if not url or url == "memory://":
        return LocalLimiter()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLimiter(url)
    raise ValueError(f"unknown rate-limit URL {url!r} (memory:// or redis://...)")
