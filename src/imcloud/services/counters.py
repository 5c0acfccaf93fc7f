"""Per-app and per-user counters, taken and given back with conditional UPDATEs (E1).

`UPDATE … SET n = n + k WHERE n + k <= cap` is decided by the database under the row's
lock, so N concurrent requests for k free places admit exactly k, on SQLite and on
PostgreSQL, on one node or many. A refusal raises, and the caller's transaction rolls
back everything it did before (E2).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud.errors import Code, refuse
from imcloud.store.tables import im_accounts, im_app_counters, im_groups


async def lock_app(conn: AsyncConnection, sdkappid: int) -> None:
    """Take the app's counters row first, as every multi-row change does, so two
    changes never wait on each other's rows in opposite orders (PostgreSQL)."""
    await conn.execute(sa.select(im_app_counters.c.sdkappid)
                       .where(im_app_counters.c.sdkappid == sdkappid).with_for_update())


async def take_app(conn: AsyncConnection, sdkappid: int, column: str, n: int,
                   cap: int | None, code: Code, message: str) -> None:
    col = im_app_counters.c[column]
    q = sa.update(im_app_counters).where(im_app_counters.c.sdkappid == sdkappid)
    if cap is not None:
        q = q.where(col + n <= cap)
    if (await conn.execute(q.values({column: col + n}))).rowcount != 1:
        raise refuse(code, message)


async def give_back_app(conn: AsyncConnection, sdkappid: int, column: str, n: int) -> None:
    col = im_app_counters.c[column]
    await conn.execute(sa.update(im_app_counters)
                       .where(im_app_counters.c.sdkappid == sdkappid)
                       .values({column: col - n}))


async def take_new_group_today(conn: AsyncConnection, sdkappid: int, today: date,
                               cap: int | None) -> None:
    """Net new groups (created minus destroyed) per day (10006)."""
    c = im_app_counters.c
    same_day = c.day == today
    q = (sa.update(im_app_counters).where(c.sdkappid == sdkappid)
         .values(day=today, net_new_groups=sa.case((same_day, c.net_new_groups + 1), else_=1)))
    if cap is not None:
        q = q.where(sa.or_(c.day.is_(None), c.day != today, c.net_new_groups < cap))
    if (await conn.execute(q)).rowcount != 1:
        raise refuse(Code.FREQUENCY_LIMIT,
                     f"more than {cap} net new groups today; try again tomorrow")


async def group_destroyed_today(conn: AsyncConnection, sdkappid: int, today: date) -> None:
    c = im_app_counters.c
    await conn.execute(
        sa.update(im_app_counters).where(c.sdkappid == sdkappid)
        .values(day=today, net_new_groups=sa.case((c.day == today, c.net_new_groups - 1),
                                                  else_=-1)))


async def app_counts(conn: AsyncConnection, sdkappid: int) -> Any:
    row = (await conn.execute(
        sa.select(im_app_counters.c.accounts, im_app_counters.c.groups,
                  im_app_counters.c.av_rooms)
        .where(im_app_counters.c.sdkappid == sdkappid))).one()
    return row


_G, _A = im_groups.c, im_accounts.c
_TAKE_SEATS = (  # built once: the hot path of joins (see services/apps.py)
    sa.update(im_groups)
    .where(_G.sdkappid == sa.bindparam("a"), _G.group_id == sa.bindparam("g"))
    .where(sa.or_(_G.max_member_count.is_(None),
                  _G.member_count + sa.bindparam("n") <= _G.max_member_count))
    .values(member_count=_G.member_count + sa.bindparam("n")))
_TAKE_USER_GROUP = (
    sa.update(im_accounts)
    .where(_A.sdkappid == sa.bindparam("a"), _A.user_id == sa.bindparam("u"),
           _A.joined_groups < sa.bindparam("cap"))
    .values(joined_groups=_A.joined_groups + 1))


async def take_seats(conn: AsyncConnection, sdkappid: int, group_id: str, n: int) -> None:
    """n more members into a group, within the cap fixed at its creation (E3, 10014)."""
    if (await conn.execute(_TAKE_SEATS, {"a": sdkappid, "g": group_id, "n": n})).rowcount != 1:
        raise refuse(Code.GROUP_FULL, f"group {group_id} is full")


async def free_seats(conn: AsyncConnection, sdkappid: int, group_id: str, n: int) -> None:
    g = im_groups.c
    await conn.execute(sa.update(im_groups).where(g.sdkappid == sdkappid, g.group_id == group_id)
                       .values(member_count=g.member_count - n))


async def take_user_groups(conn: AsyncConnection, sdkappid: int, users: list[str],
                           cap: int | None) -> None:
    """One more joined group for each user (10037); in a fixed order, so two requests
    never wait on each other's rows in opposite orders."""
    a = im_accounts.c
    for user in sorted(users):
        taken = await conn.execute(_TAKE_USER_GROUP, {
            "a": sdkappid, "u": user, "cap": cap if cap is not None else 2**31 - 1})
        if taken.rowcount != 1:
            gone = await conn.scalar(sa.select(a.user_id).where(
                a.sdkappid == sdkappid, a.user_id == user)) is None
            if gone:  # deleted while this request waited for its row
                raise refuse(Code.ACCOUNT_NOT_FOUND, f"account {user!r} does not exist")
            raise refuse(Code.GROUPS_PER_USER_LIMIT,
                         f"{user} is at the limit of {cap} groups per user")


async def free_user_groups(conn: AsyncConnection, sdkappid: int, users: list[str]) -> None:
    a = im_accounts.c
    for user in sorted(users):
        await conn.execute(sa.update(im_accounts)
                           .where(a.sdkappid == sdkappid, a.user_id == user)
                           .values(joined_groups=a.joined_groups - 1))
