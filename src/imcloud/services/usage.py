"""Daily usage per app (SPEC §6): the day's DAU, peak group count and AV rooms.

Writers report what they measured; a day keeps the highest value reported for it, so
several nodes (or a re-run) can report the same day without losing a peak.
"""

from __future__ import annotations

from datetime import date, tzinfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud.clock import month_start, next_month
from imcloud.errors import Refused
from imcloud.services import apps
from imcloud.store.db import Database
from imcloud.store.tables import im_app_counters, usage_daily


async def record(
    conn: AsyncConnection,
    sdkappid: int,
    day: date,
    *,
    dau: int = 0,
    groups: int = 0,
    av_rooms: int = 0,
) -> None:
    """Raise the day's figures to at least these values."""
    if min(dau, groups, av_rooms) < 0:
        raise Refused("usage figures are never negative")
    await apps.get(conn, sdkappid)
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        usage_daily
    )
    values = {"sdkappid": sdkappid, "day": day, "dau": dau, "groups": groups,
              "av_rooms": av_rooms}
    ex = insert.excluded
    await conn.execute(
        insert.values(**values).on_conflict_do_update(
            index_elements=["sdkappid", "day"],
            set_={
                "dau": sa.case((ex.dau > usage_daily.c.dau, ex.dau), else_=usage_daily.c.dau),
                "groups": sa.case((ex.groups > usage_daily.c.groups, ex.groups),
                                  else_=usage_daily.c.groups),
                "av_rooms": sa.case((ex.av_rooms > usage_daily.c.av_rooms, ex.av_rooms),
                                    else_=usage_daily.c.av_rooms),
            },
        )
    )


async def snapshot_counts(db: Database, day: date) -> None:
    """Record every app's current group and AV-room counts as at least that day's peak,
    so a day without any group activity still carries the count for billing (B5)."""
    c, u = im_app_counters.c, usage_daily.c
    today = sa.and_(u.sdkappid == c.sdkappid, u.day == day)
    async with db.read() as conn:  # only apps whose row for the day is behind
        rows = list(await conn.execute(
            sa.select(c.sdkappid, c.groups, c.av_rooms)
            .select_from(im_app_counters.outerjoin(usage_daily, today))
            .where(sa.or_(c.groups > sa.func.coalesce(u.groups, 0),
                          c.av_rooms > sa.func.coalesce(u.av_rooms, 0)))))
    for r in rows:
        async with db.write() as conn:
            await record(conn, int(r.sdkappid), day, groups=int(r.groups),
                         av_rooms=int(r.av_rooms))


def month_days(year: int, month: int, tz: tzinfo) -> tuple[date, date]:
    """First day of the month and first day of the next (half-open)."""
    start = month_start(year, month, tz).astimezone(tz).date()
    end = month_start(*next_month(year, month), tz).astimezone(tz).date()
    return start, end


async def month(
    conn: AsyncConnection, sdkappid: int, year: int, month_: int, tz: tzinfo
) -> list[dict[str, object]]:
    """Every day of the month with its figures (0 where nothing was recorded)."""
    await apps.get(conn, sdkappid)
    start, end = month_days(year, month_, tz)
    rows = {
        r.day: r
        for r in await conn.execute(
            sa.select(usage_daily).where(
                usage_daily.c.sdkappid == sdkappid,
                usage_daily.c.day >= start,
                usage_daily.c.day < end,
            )
        )
    }
    out: list[dict[str, object]] = []
    d = start
    while d < end:
        r = rows.get(d)
        out.append({"date": d.isoformat(), "dau": r.dau if r else 0,
                    "groups": r.groups if r else 0, "av_rooms": r.av_rooms if r else 0})
        d = date.fromordinal(d.toordinal() + 1)
    return out

