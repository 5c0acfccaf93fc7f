"""IM accounts of an app (`im_open_login_svc`): import, check, delete."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import events
from imcloud.errors import Code, refuse
from imcloud.services import counters
from imcloud.services.tenant import Tenant
from imcloud.store.tables import im_accounts, im_groups, im_members


@dataclass(frozen=True)
class NewAccount:
    user_id: str
    nick: str = ""
    face_url: str = ""


async def existing(conn: AsyncConnection, sdkappid: int, user_ids: list[str]) -> set[str]:
    if not user_ids:
        return set()
    rows = await conn.scalars(sa.select(im_accounts.c.user_id).where(
        im_accounts.c.sdkappid == sdkappid, im_accounts.c.user_id.in_(set(user_ids))))
    return set(rows)


async def must_exist(conn: AsyncConnection, t: Tenant, user_id: str) -> None:
    if not await existing(conn, t.sdkappid, [user_id]):
        raise refuse(Code.ACCOUNT_NOT_FOUND, f"account {user_id!r} does not exist")


async def import_accounts(conn: AsyncConnection, t: Tenant, accounts: list[NewAccount]) -> None:
    """Create the accounts that don't exist yet; all or none (E2, 70398 on Trial)."""
    wanted = {a.user_id: a for a in accounts}
    known = await existing(conn, t.sdkappid, list(wanted))
    new = [a for uid, a in wanted.items() if uid not in known]
    if new:
        cap = t.limits["accounts"]
        await counters.take_app(conn, t.sdkappid, "accounts", len(new), cap,
                                Code.TRIAL_ACCOUNT_LIMIT,
                                f"the {t.edition.name} edition allows {cap} accounts")
        await conn.execute(sa.insert(im_accounts), [
            {"sdkappid": t.sdkappid, "user_id": a.user_id, "nick": a.nick,
             "face_url": a.face_url, "joined_groups": 0, "created_at": t.now} for a in new])
    for uid in known:
        a = wanted[uid]
        if a.nick or a.face_url:
            values = {k: v for k, v in (("nick", a.nick), ("face_url", a.face_url)) if v}
            await conn.execute(sa.update(im_accounts).where(
                im_accounts.c.sdkappid == t.sdkappid, im_accounts.c.user_id == uid)
                .values(**values))


_LOCK_GROUP = sa.select(im_groups.c.group_id).where(
    im_groups.c.sdkappid == sa.bindparam("a"),
    im_groups.c.group_id == sa.bindparam("g")).with_for_update()


async def delete(conn: AsyncConnection, t: Tenant, user_ids: list[str]) -> None:
    """Delete accounts and their memberships; groups they own lose their owner.

    Locks in the order every writer uses — app, groups, accounts — so it never waits
    on a join that waits on it. The memberships are read again once the accounts are
    locked: a join that committed in between is seen (and its seat given back), a
    later one waits and then finds the account gone.
    """
    m = im_members.c
    await counters.lock_app(conn, t.sdkappid)
    locked: set[str] = set()
    for gid in sorted(set(await conn.scalars(sa.select(m.group_id).where(
            m.sdkappid == t.sdkappid, m.user_id.in_(set(user_ids)))))):
        await conn.execute(_LOCK_GROUP, {"a": t.sdkappid, "g": gid})
        locked.add(gid)
    gone = sorted(await conn.scalars(
        sa.select(im_accounts.c.user_id)
        .where(im_accounts.c.sdkappid == t.sdkappid, im_accounts.c.user_id.in_(set(user_ids)))
        .order_by(im_accounts.c.user_id).with_for_update()))
    if not gone:
        return
    memberships = list(await conn.execute(
        sa.select(m.group_id, m.user_id).where(m.sdkappid == t.sdkappid, m.user_id.in_(gone))))
    per_group: dict[str, int] = {}
    for r in memberships:
        per_group[r.group_id] = per_group.get(r.group_id, 0) + 1
    for gid in sorted(per_group):  # (a group joined meanwhile is locked here, late)
        await counters.free_seats(conn, t.sdkappid, gid, per_group[gid])
    await conn.execute(sa.delete(im_members).where(m.sdkappid == t.sdkappid,
                                                   m.user_id.in_(gone)))
    await conn.execute(sa.update(im_groups).where(
        im_groups.c.sdkappid == t.sdkappid, im_groups.c.owner.in_(gone)).values(owner=None))
    await conn.execute(sa.delete(im_accounts).where(
        im_accounts.c.sdkappid == t.sdkappid, im_accounts.c.user_id.in_(gone)))
    await counters.give_back_app(conn, t.sdkappid, "accounts", len(gone))
    events.emit("accounts_deleted", t.sdkappid, users=gone)

