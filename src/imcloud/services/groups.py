"""Groups and membership (`group_open_http_svc`) with the plan's limits (SPEC §2, §7).

Limits are checked at create / join / raise time only (R5): a group keeps the cap it
was created with (E3) and its members whatever the plan does later. Every membership
change of a group first locks the group's row, so the reads that follow (who is
already a member?) cannot go stale under a concurrent request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import events
from imcloud.errors import Code, refuse
from imcloud.im import rules
from imcloud.services import counters, usage
from imcloud.services.im_accounts import existing, must_exist
from imcloud.services.tenant import Tenant
from imcloud.store.tables import im_accounts, im_group_messages, im_groups, im_members

OWNER, ADMIN, MEMBER = "Owner", "Admin", "Member"


@dataclass(frozen=True)
class NewGroup:
    type: str
    name: str
    owner: str | None = None
    group_id: str | None = None
    introduction: str = ""
    notification: str = ""
    face_url: str = ""
    max_member_count: int | None = None
    apply_join_option: str | None = None
    members: list[tuple[str, str]] = field(default_factory=list)  # (user, role)


# built once (see services/apps.py)
_LOCK_GROUP = sa.select(im_groups).where(
    im_groups.c.sdkappid == sa.bindparam("a"),
    im_groups.c.group_id == sa.bindparam("g")).with_for_update()
_A, _M = im_accounts.c, im_members.c
_WHO = (sa.select(_A.user_id, _M.user_id.label("member"))
        .select_from(im_accounts.outerjoin(im_members, sa.and_(
            _M.sdkappid == _A.sdkappid, _M.group_id == sa.bindparam("g"),
            _M.user_id == _A.user_id)))
        .where(_A.sdkappid == sa.bindparam("a"),
               _A.user_id.in_(sa.bindparam("users", expanding=True))))
_ADD_MEMBERS = sa.insert(im_members)


async def lock(conn: AsyncConnection, t: Tenant, group_id: str) -> sa.Row[Any]:
    """The group's row, locked for the rest of the transaction (10010 if absent)."""
    row = (await conn.execute(_LOCK_GROUP, {"a": t.sdkappid, "g": group_id})).first()
    if row is None:
        raise refuse(Code.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
    return row


async def record_counts(conn: AsyncConnection, t: Tenant) -> None:
    """Today's peak group and AV-room counts (SPEC §6), read by billing (B5)."""
    row = await counters.app_counts(conn, t.sdkappid)
    await usage.record(conn, t.sdkappid, t.today, groups=row.groups, av_rooms=row.av_rooms)


async def create(conn: AsyncConnection, t: Tenant, g: NewGroup) -> str:
    kind = rules.group_type(g.type)
    cap = rules.member_cap(kind, g.max_member_count, t.limits, t.edition)
    join_option = rules.check_join_option(g.apply_join_option or rules.DEFAULT_JOIN_OPTION[kind])
    if kind == rules.AV and g.members:
        raise refuse(Code.NO_PERMISSION, "members join an AVChatRoom from clients; "
                                         "MemberList is not allowed")
    if g.owner is not None:
        await must_exist(conn, t, g.owner)
    if g.group_id is not None:
        gid = rules.check_group_id(g.group_id)
        taken = await conn.scalar(sa.select(im_groups.c.group_id).where(
            im_groups.c.sdkappid == t.sdkappid, im_groups.c.group_id == gid))
        if taken is not None:
            raise refuse(Code.GROUP_ID_USED, f"group ID {gid!r} is already used")
    else:
        gid = rules.new_group_id()
    if kind == rules.AV:
        cap_rooms = t.limits["av_rooms"]
        await counters.take_app(conn, t.sdkappid, "av_rooms", 1, cap_rooms, Code.AV_ROOM_LIMIT,
                                f"this app has {cap_rooms} AVChatRooms, its limit")
    else:
        cap_groups = t.limits["groups"]
        await counters.take_app(conn, t.sdkappid, "groups", 1, cap_groups,
                                Code.TRIAL_GROUP_LIMIT,
                                f"this app has {cap_groups} groups, the Trial limit")
    await counters.take_new_group_today(conn, t.sdkappid, t.today,
                                        t.edition.limits["net_new_groups_per_day"])
    members: dict[str, str] = {}
    if g.owner is not None and kind != rules.AV:
        members[g.owner] = OWNER
    wanted = [u for u, _ in g.members if u not in members]
    known = await existing(conn, t.sdkappid, wanted)
    missing = sorted(set(wanted) - known)
    if missing:
        raise refuse(Code.ACCOUNT_NOT_FOUND, f"accounts do not exist: {', '.join(missing)}")
    for user, role in g.members:
        members.setdefault(user, ADMIN if role == ADMIN else MEMBER)
    if cap is not None and len(members) > cap:
        raise refuse(Code.GROUP_FULL, f"{len(members)} members do not fit a cap of {cap}")
    if rules.counts_toward_user_limit(kind):
        await counters.take_user_groups(conn, t.sdkappid, list(members),
                                        t.limits["groups_per_user"])
    await conn.execute(sa.insert(im_groups).values(
        sdkappid=t.sdkappid, group_id=gid, type=kind, name=g.name, owner=g.owner,
        introduction=g.introduction, notification=g.notification, face_url=g.face_url,
        apply_join_option=join_option, max_member_count=cap, member_count=len(members),
        last_msg_seq=0, created_at=t.now))
    if members:
        await conn.execute(sa.insert(im_members), [
            {"sdkappid": t.sdkappid, "group_id": gid, "user_id": u, "role": r,
             "joined_at": t.now} for u, r in members.items()])
    await record_counts(conn, t)
    if members:
        events.emit("members_added", t.sdkappid, group=gid, users=list(members), seq=0)
    return gid


async def destroy(conn: AsyncConnection, t: Tenant, group_id: str) -> None:
    await counters.lock_app(conn, t.sdkappid)  # lock order: app, group, accounts
    g = await lock(conn, t, group_id)
    m = im_members.c
    users = list(await conn.scalars(sa.select(m.user_id).where(
        m.sdkappid == t.sdkappid, m.group_id == group_id)))
    if rules.counts_toward_user_limit(g.type):
        await counters.free_user_groups(conn, t.sdkappid, users)
    where = (im_groups.c.sdkappid == t.sdkappid, im_groups.c.group_id == group_id)
    await conn.execute(sa.delete(im_members).where(m.sdkappid == t.sdkappid,
                                                   m.group_id == group_id))
    await conn.execute(sa.delete(im_group_messages).where(
        im_group_messages.c.sdkappid == t.sdkappid, im_group_messages.c.group_id == group_id))
    await conn.execute(sa.delete(im_groups).where(*where))
    await counters.give_back_app(conn, t.sdkappid, "av_rooms" if g.type == rules.AV else "groups",
                                 1)
    await counters.group_destroyed_today(conn, t.sdkappid, t.today)
    events.emit("group_destroyed", t.sdkappid, group=group_id)


def info(g: sa.Row[Any], members: list[sa.Row[Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "GroupId": g.group_id,
        "ErrorCode": 0,
        "ErrorInfo": "",
        "Type": g.type,
        "Name": g.name,
        "Introduction": g.introduction,
        "Notification": g.notification,
        "FaceUrl": g.face_url,
        "Owner_Account": g.owner or "",
        "CreateTime": int(g.created_at.timestamp()),
        "MemberNum": g.member_count,
        "MaxMemberNum": g.max_member_count if g.max_member_count is not None else 0,
        "ApplyJoinOption": g.apply_join_option,
        "NextMsgSeq": g.last_msg_seq + 1,
    }
    if members is not None:
        out["MemberList"] = [member_info(m) for m in members]
    return out


def member_info(m: sa.Row[Any]) -> dict[str, Any]:
    return {"Member_Account": m.user_id, "Role": m.role,
            "JoinTime": int(m.joined_at.timestamp())}


async def get_info(conn: AsyncConnection, t: Tenant, group_ids: list[str]
                   ) -> list[dict[str, Any]]:
    rows = {r.group_id: r for r in await conn.execute(sa.select(im_groups).where(
        im_groups.c.sdkappid == t.sdkappid, im_groups.c.group_id.in_(set(group_ids))))}
    out = []
    for gid in group_ids:
        g = rows.get(gid)
        if g is None:
            out.append({"GroupId": gid, "ErrorCode": int(Code.GROUP_NOT_FOUND),
                        "ErrorInfo": "group does not exist"})
        else:
            out.append(info(g))
    return out


async def modify(conn: AsyncConnection, t: Tenant, group_id: str, *, name: str | None = None,
                 introduction: str | None = None, notification: str | None = None,
                 face_url: str | None = None, max_member_num: int | None = None,
                 apply_join_option: str | None = None) -> None:
    g = await lock(conn, t, group_id)
    values: dict[str, Any] = {}
    for key, v in (("name", name), ("introduction", introduction),
                   ("notification", notification), ("face_url", face_url)):
        if v is not None:
            values[key] = v
    if apply_join_option is not None:
        values["apply_join_option"] = rules.check_join_option(apply_join_option)
    if max_member_num is not None and g.type != rules.AV:
        values["max_member_count"] = rules.raised_cap(
            g.type, g.max_member_count, max_member_num, g.member_count, t.limits, t.edition)
    if values:
        await conn.execute(sa.update(im_groups).where(
            im_groups.c.sdkappid == t.sdkappid, im_groups.c.group_id == group_id).values(**values))


async def add_members(conn: AsyncConnection, t: Tenant, group_id: str, user_ids: list[str],
                      *, by_admin: bool = True) -> list[tuple[str, int]]:
    """Result per member: 0 = account does not exist, 1 = added, 2 = already a member.

    All-or-nothing (E2): if the new members do not all fit, or one of them is at the
    groups-per-user limit, nobody is added.
    """
    g = await lock(conn, t, group_id)
    if g.type == rules.AV and by_admin:
        raise refuse(Code.NO_PERMISSION, "members join an AVChatRoom from clients")
    wanted = list(dict.fromkeys(user_ids))
    # who exists, and who is already in, in one read
    rows = list(await conn.execute(_WHO, {"a": t.sdkappid, "g": group_id, "users": wanted}))
    known = {r.user_id for r in rows}
    already = {r.user_id for r in rows if r.member is not None}
    new = [u for u in wanted if u in known and u not in already]
    if new:
        await counters.take_seats(conn, t.sdkappid, group_id, len(new))
        if rules.counts_toward_user_limit(g.type):
            await counters.take_user_groups(conn, t.sdkappid, new, t.limits["groups_per_user"])
        await conn.execute(_ADD_MEMBERS, [
            {"sdkappid": t.sdkappid, "group_id": group_id, "user_id": u, "role": MEMBER,
             "joined_at": t.now} for u in new])
        events.emit("members_added", t.sdkappid, group=group_id, users=new,
                    seq=int(g.last_msg_seq))
    return [(u, 0 if u not in known else 2 if u in already else 1) for u in wanted]


async def remove_members(conn: AsyncConnection, t: Tenant, group_id: str,
                         user_ids: list[str]) -> list[str]:
    g = await lock(conn, t, group_id)
    if g.owner is not None and g.owner in user_ids:
        raise refuse(Code.INVALID_PARAMETER,
                     "invalid parameter: MemberToDel_Account names the group owner")
    m = im_members.c
    present = sorted(set(await conn.scalars(sa.select(m.user_id).where(
        m.sdkappid == t.sdkappid, m.group_id == group_id, m.user_id.in_(set(user_ids))))))
    if present:
        await conn.execute(sa.delete(im_members).where(
            m.sdkappid == t.sdkappid, m.group_id == group_id, m.user_id.in_(present)))
        await counters.free_seats(conn, t.sdkappid, group_id, len(present))
        if rules.counts_toward_user_limit(g.type):
            await counters.free_user_groups(conn, t.sdkappid, present)
        events.emit("members_removed", t.sdkappid, group=group_id, users=present)
    return present


async def members(conn: AsyncConnection, t: Tenant, group_id: str, limit: int | None,
                  offset: int) -> tuple[int, list[sa.Row[Any]]]:
    g = (await conn.execute(sa.select(im_groups).where(
        im_groups.c.sdkappid == t.sdkappid, im_groups.c.group_id == group_id))).first()
    if g is None:
        raise refuse(Code.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
    m = im_members.c
    q = (sa.select(im_members).where(m.sdkappid == t.sdkappid, m.group_id == group_id)
         .order_by(m.joined_at, m.user_id).offset(offset))
    if limit is not None:
        q = q.limit(limit)
    return int(g.member_count), list(await conn.execute(q))


async def joined(conn: AsyncConnection, t: Tenant, user_id: str, limit: int | None,
                 offset: int, group_type: str | None) -> tuple[int, list[str]]:
    await must_exist(conn, t, user_id)
    m, g = im_members.c, im_groups.c
    q = (sa.select(m.group_id).join(im_groups, sa.and_(g.sdkappid == m.sdkappid,
                                                       g.group_id == m.group_id))
         .where(m.sdkappid == t.sdkappid, m.user_id == user_id))
    if group_type is not None:
        q = q.where(g.type == rules.group_type(group_type))
    ids = list(await conn.scalars(q.order_by(m.joined_at, m.group_id)))
    page = ids[offset: offset + limit if limit is not None else None]
    return len(ids), page


async def app_groups(conn: AsyncConnection, t: Tenant, limit: int, offset: int,
                     group_type: str | None) -> tuple[int, list[str]]:
    g = im_groups.c
    base = sa.select(g.group_id).where(g.sdkappid == t.sdkappid)
    if group_type is not None:
        base = base.where(g.type == rules.group_type(group_type))
    total = int(await conn.scalar(sa.select(sa.func.count()).select_from(base.subquery())) or 0)
    page = list(await conn.scalars(base.order_by(g.created_at, g.group_id)
                                   .offset(offset).limit(limit)))
    return total, page
