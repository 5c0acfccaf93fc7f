"""Daily active users (SPEC §6): a user is active on a day their WebSocket session is
open at any moment of it; REST calls never count. Trial apps stop at 100 a day (72000).
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud.errors import Code, refuse
from imcloud.store.tables import im_active_users, usage_daily


async def mark_active(conn: AsyncConnection, sdkappid: int, user_id: str, day: date,
                      cap: int | None) -> bool:
    """Count the user active on `day`; True if they are newly counted.

    The first session of the day takes a place under the DAU cap with a conditional
    UPDATE (atomic across nodes); the 101st user of a Trial day is refused (72000).
    `cap=None` records without a cap (sessions already open when a new day begins).
    """
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)
    added = await conn.execute(
        ins(im_active_users).values(sdkappid=sdkappid, day=day, user_id=user_id)
        .on_conflict_do_nothing().returning(im_active_users.c.user_id))
    if added.first() is None:
        return False  # already counted today
    await conn.execute(
        ins(usage_daily).values(sdkappid=sdkappid, day=day, dau=0, groups=0, av_rooms=0)
        .on_conflict_do_nothing())
    u = usage_daily.c
    q = sa.update(usage_daily).where(u.sdkappid == sdkappid, u.day == day)
    if cap is not None:
        q = q.where(u.dau < cap)
    if (await conn.execute(q.values(dau=u.dau + 1))).rowcount != 1:
        raise refuse(Code.TRIAL_DAU_LIMIT,
                     f"the app reached its limit of {cap} daily active users today")
    return True
