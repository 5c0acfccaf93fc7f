"""Group and one-to-one messages: per-group MsgSeq, history within retention (E5)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import events
from imcloud.errors import Code, refuse
from imcloud.im import rules
from imcloud.services import filters, groups
from imcloud.services.im_accounts import must_exist
from imcloud.services.tenant import Tenant
from imcloud.store.db import Database
from imcloud.store.tables import apps, im_c2c_messages, im_group_messages, im_groups, im_members


def kept_since(t: Tenant) -> datetime:
    """The oldest moment whose messages are still kept (E5)."""
    return t.now - timedelta(days=int(t.app.plan.items["history_days"]))


# built once (see services/apps.py)
_G, _M = im_groups.c, im_members.c
_NEXT_SEQ = (sa.update(im_groups)
             .where(_G.sdkappid == sa.bindparam("a"), _G.group_id == sa.bindparam("g"))
             .values(last_msg_seq=_G.last_msg_seq + 1).returning(_G.last_msg_seq, _G.type))
_IS_MEMBER = sa.select(_M.user_id).where(
    _M.sdkappid == sa.bindparam("a"), _M.group_id == sa.bindparam("g"),
    _M.user_id == sa.bindparam("u"))
_STORE_GROUP_MSG = sa.insert(im_group_messages)


async def send_group(conn: AsyncConnection, t: Tenant, group_id: str, from_account: str | None,
                     random: int, body: list[dict[str, Any]]) -> tuple[int, datetime]:
    """Store a group message under the group's next MsgSeq; (seq, time).

    The hot path of the API: the MsgSeq is taken first (its row lock orders senders;
    a missing group is "no row"), then whatever can refuse; a refusal rolls the seq back.
    """
    taken = (await conn.execute(_NEXT_SEQ, {"a": t.sdkappid, "g": group_id})).first()
    if taken is None:
        raise refuse(Code.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
    seq = int(taken.last_msg_seq)
    sender = from_account or t.app.admin_identifier
    if from_account is not None and from_account != t.app.admin_identifier:
        member = taken.type != rules.AV and await conn.scalar(
            _IS_MEMBER, {"a": t.sdkappid, "g": group_id, "u": from_account}) is not None
        if not member:
            await must_exist(conn, t, from_account)  # 10019 before 10007
            if taken.type != rules.AV:
                raise refuse(Code.NO_PERMISSION,
                             f"{from_account!r} is not a member of group {group_id!r}")
    await filters.check(conn, t, body)
    await conn.execute(_STORE_GROUP_MSG, {
        "sdkappid": t.sdkappid, "group_id": group_id, "msg_seq": seq, "from_account": sender,
        "random": random, "msg_body": body, "sent_at": t.now})
    events.emit("group_msg", t.sdkappid, group=group_id, seq=seq, sender=sender,
                random=random, body=body, time=int(t.now.timestamp()))
    return seq, t.now


async def group_history(conn: AsyncConnection, t: Tenant, group_id: str, count: int,
                        up_to_seq: int | None) -> tuple[list[sa.Row[Any]], bool]:
    """Up to `count` messages with MsgSeq <= up_to_seq, newest first; (rows, finished)."""
    await groups.members(conn, t, group_id, 0, 0)  # 10010 if the group does not exist
    m = im_group_messages.c
    q = (sa.select(im_group_messages)
         .where(m.sdkappid == t.sdkappid, m.group_id == group_id, m.sent_at >= kept_since(t)))
    if up_to_seq is not None:
        q = q.where(m.msg_seq <= up_to_seq)
    rows = list(await conn.execute(q.order_by(m.msg_seq.desc()).limit(count + 1)))
    return rows[:count], len(rows) <= count


def msg_key(row_id: int, random: int, at: datetime) -> str:
    return f"{row_id}_{random}_{int(at.timestamp())}"


async def send_c2c(conn: AsyncConnection, t: Tenant, from_account: str | None, to_account: str,
                   random: int, body: list[dict[str, Any]]) -> tuple[str, datetime]:
    sender = from_account or t.app.admin_identifier
    if from_account is not None and from_account != t.app.admin_identifier:
        await must_exist(conn, t, from_account)
    await must_exist(conn, t, to_account)
    await filters.check(conn, t, body)
    row_id = int((await conn.execute(sa.insert(im_c2c_messages).values(
        sdkappid=t.sdkappid, from_account=sender, to_account=to_account, random=random,
        msg_body=body, sent_at=t.now).returning(im_c2c_messages.c.id))).scalar_one())
    key = msg_key(row_id, random, t.now)
    events.emit("c2c_msg", t.sdkappid, sender=sender, to=to_account, key=key, random=random,
                body=body, time=int(t.now.timestamp()))
    return key, t.now


async def c2c_history(conn: AsyncConnection, t: Tenant, a: str, b: str, max_count: int,
                      min_time: datetime, max_time: datetime, before_id: int | None
                      ) -> tuple[list[sa.Row[Any]], bool]:
    """Messages between a and b in [min_time, max_time], newest first; (rows, complete)."""
    c = im_c2c_messages.c
    q = sa.select(im_c2c_messages).where(
        c.sdkappid == t.sdkappid,
        sa.or_(sa.and_(c.from_account == a, c.to_account == b),
               sa.and_(c.from_account == b, c.to_account == a)),
        c.sent_at >= max(min_time, kept_since(t)), c.sent_at <= max_time)
    if before_id is not None:
        q = q.where(c.id < before_id)
    rows = list(await conn.execute(q.order_by(c.id.desc()).limit(max_count + 1)))
    return rows[:max_count], len(rows) <= max_count


async def purge_expired(db: Database, now: datetime) -> int:
    """E5: delete every message older than its app's `history_days`; how many went."""
    async with db.read() as conn:
        keep = list(await conn.execute(sa.select(apps.c.sdkappid, apps.c.history_days)))
    gone = 0
    for app in keep:
        cutoff = now - timedelta(days=int(app.history_days))
        async with db.write() as conn:
            for table in (im_group_messages, im_c2c_messages):
                result = await conn.execute(sa.delete(table).where(
                    table.c.sdkappid == app.sdkappid, table.c.sent_at < cutoff))
                gone += int(result.rowcount or 0)
    return gone
