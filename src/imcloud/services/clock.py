"""The stored clock: real time, or a simulated time that only moves forward (SPEC §10)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud.clock import utcnow
from imcloud.errors import Refused
from imcloud.store.tables import clock


class NotInitialised(Refused):
    pass


async def now(conn: AsyncConnection) -> datetime:
    """The time every plan, billing, usage and retention rule reads."""
    row = (await conn.execute(sa.select(clock.c.simulated, clock.c.now))).first()
    if row is None:
        raise NotInitialised("the database is not initialised: run `imcloud init`")
    return resolve(bool(row.simulated), row.now)


def resolve(simulated: bool, stored: datetime | None) -> datetime:
    """The clock's time from its row (read alone, or joined to another query)."""
    if simulated:
        assert stored is not None
        return stored
    return utcnow()


async def is_simulated(conn: AsyncConnection) -> bool:
    row = (await conn.execute(sa.select(clock.c.simulated))).first()
    if row is None:
        raise NotInitialised("the database is not initialised: run `imcloud init`")
    return bool(row.simulated)


async def ensure(conn: AsyncConnection, simulated_at: datetime | None) -> bool:
    """Create the clock row on first init; True if it was created now."""
    row = (await conn.execute(sa.select(clock.c.simulated))).first()
    if row is not None:
        if simulated_at is not None and not row.simulated:
            raise Refused("this database already runs on real time; a simulated clock "
                          "is chosen only when a database is first initialised")
        return False
    await conn.execute(
        sa.insert(clock).values(id=1, simulated=simulated_at is not None, now=simulated_at)
    )
    return True


async def set_time(conn: AsyncConnection, t: datetime) -> datetime:
    """Move the simulated clock to t; never backwards."""
    row = (
        await conn.execute(sa.select(clock.c.simulated, clock.c.now).with_for_update())
    ).first()
    if row is None:
        raise NotInitialised("the database is not initialised: run `imcloud init`")
    if not row.simulated:
        raise Refused("this database runs on real time; only a simulated clock can be set")
    if t < row.now:
        raise Refused(
            f"the clock never goes backwards (it is {row.now.isoformat()}, "
            f"asked for {t.isoformat()})"
        )
    await conn.execute(sa.update(clock).values(now=t))
    return t
