"""Frequency limits of SPEC §7 that are rates, not counts: REST calls per app (60007) and
messages per group (10023). Both are "at most N in any second" (`imcloud.ratelimit`),
shared by every node through Redis when the deployment has one; 0 turns a limit off.

Net new groups per day (10006) is a count kept in the database with the app's other
counters (`services.counters`), so it survives restarts and is decided atomically with
the group's creation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from imcloud.errors import Code, Refused, refuse
from imcloud.ratelimit import Limiter, from_url
from imcloud.settings import Settings


@dataclass
class Rates:
    limiter: Limiter
    rest_calls_per_second: int  # per app, every v4 call; 0 = no limit
    group_messages_per_second: int  # per group, sent by REST or WebSocket; 0 = no limit

    @property
    def may_wait(self) -> bool:
        """Whether a check waits for the network (Redis): then it must not run inside a
        SQLite write transaction, which holds the database and runs on the event loop."""
        return self.limiter.remote and bool(
            self.rest_calls_per_second or self.group_messages_per_second
        )

    async def rest_call(self, sdkappid: int) -> None:
        """Count one authenticated REST call of the app (60007 over the limit)."""
        n = self.rest_calls_per_second
        if n and await self.limiter.take(f"rest:{sdkappid}", n) is None:
            raise refuse(
                Code.REST_FREQUENCY_LIMIT,
                f"more than {n} REST calls per second for this app; retry later",
            )

    @asynccontextmanager
    async def group_message(self, sdkappid: int, group_id: str) -> AsyncIterator[None]:
        """Hold a place in the group's second for a message (10023 when none is free);
        give it back if a rule refuses the message (then nothing was stored), so refused
        messages spend nothing. Any other failure keeps it: never more than N stored."""
        n = self.group_messages_per_second
        if not n:
            yield
            return
        ticket = await self.limiter.take(f"msg:{sdkappid}:{group_id}", n)
        if ticket is None:
            raise refuse(
                Code.MESSAGE_FREQUENCY_LIMIT,
                f"more than {n} messages per second in group {group_id!r}; retry later",
            )
        try:
            yield
        except Refused:
            await self.limiter.give_back(ticket)
            raise

    async def close(self) -> None:
        await self.limiter.close()


def from_settings(settings: Settings) -> Rates:
    return Rates(
        from_url(settings.rate_limit_url),
        settings.rest_calls_per_second,
        settings.group_messages_per_second,
    )
