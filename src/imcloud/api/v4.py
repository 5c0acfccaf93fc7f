"""The v4 REST API (SPEC §7–§8): Tencent Cloud IM's server API, on our services.

One dispatcher does what every command shares — find the app, check it is enabled,
verify the admin UserSig, parse the body — in the order §7 fixes; each command is a
short function that calls a service and shapes Tencent's reply. Every reply is HTTP 200
with ActionStatus / ErrorCode / ErrorInfo; nothing else ever reaches a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import events
from imcloud.api import v4_schemas as s
from imcloud.errors import Code, NotFound, Refused, refuse
from imcloud.im import usersig
from imcloud.ops import logs, metrics
from imcloud.services import apps, groups, im_accounts, messages, tenant
from imcloud.services.rates import Rates
from imcloud.services.tenant import Tenant
from imcloud.store.db import Database
from imcloud.store.tables import usage_daily

log = logging.getLogger("imcloud.v4")

Handler = Callable[[AsyncConnection, Tenant, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Command:
    service: str
    name: str
    body: type[BaseModel]
    run: Handler
    read_only: bool
    summary: str


COMMANDS: dict[tuple[str, str], Command] = {}


def command(service: str, name: str, body: type[BaseModel], *, read_only: bool = False
            ) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[(service, name)] = Command(service, name, body, fn, read_only,
                                            (fn.__doc__ or name).strip().splitlines()[0])
        return fn
    return register


class Envelope(Response):
    """A v4 reply; `code` is its ErrorCode, for the metrics and the access log."""

    media_type = "application/json"

    def __init__(self, content: bytes, code: int):
        super().__init__(content)
        self.code = code


def envelope(code: int = 0, info: str = "", **reply: Any) -> Envelope:
    body = {"ActionStatus": "OK" if code == 0 else "FAIL", "ErrorCode": code, "ErrorInfo": info}
    body.update(reply)
    return Envelope(orjson.dumps(body), code)


def _field_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    return f"invalid parameter: {where}: {err['msg']}"


def _parse(cmd: Command, raw: bytes) -> BaseModel | Refused:
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        return refuse(Code.INVALID_PARAMETER, "invalid parameter: body is not valid JSON")
    if not isinstance(data, dict):
        return refuse(Code.INVALID_PARAMETER, "invalid parameter: body must be a JSON object")
    try:
        return cmd.body.model_validate(data)
    except ValidationError as e:
        return refuse(Code.INVALID_PARAMETER, _field_error(e))
    except RecursionError:
        return refuse(Code.INVALID_PARAMETER, "invalid parameter: body is nested too deeply")


# The largest v4 body: a full create_group MemberList is ~25 KiB. Past this the body is
# not read further (10004), so one request cannot make the server hold any amount.
MAX_BODY = 1 << 20


async def _read_body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY (announced or actual)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _retryable(e: DBAPIError) -> bool:
    text = str(e.orig).lower()
    return any(k in text for k in ("deadlock", "could not serialize", "database is locked"))


async def dispatch(request: Request, service: str, name: str) -> Envelope:
    """Answer one v4 call; count it (ops/metrics.py) and log one line (ops/logs.py)."""
    started = time.perf_counter()
    response = await _answer(request, service, name)
    seconds = time.perf_counter() - started
    command = f"{service}/{name}" if (service, name) in COMMANDS else "unknown"
    metrics.v4_request(command, response.code, seconds)
    logs.v4_line(request.method, service, name, command,
                 request.query_params.get("sdkappid"), response.code, seconds)
    return response


@dataclass
class _Call:
    request: Request
    sdkappid: int
    cmd: Command | None
    parsed: BaseModel | Refused | None
    service: str
    name: str
    counted: bool = False  # in the app's REST budget already (a retry is the same call)


async def _answer(request: Request, service: str, name: str) -> Envelope:
    """Checks in SPEC §7 order: 60012/60006 → 60016 → 70xxx → 60010 → 60007 → 10003 →
    10004 → the command's own limits (10023 before the others of send_group_msg)."""
    q = request.query_params
    raw_appid = q.get("sdkappid")
    if not raw_appid:
        return envelope(int(Code.MISSING_SDKAPPID), "sdkappid is missing")
    if not (raw_appid.isascii() and raw_appid.isdigit()) or len(raw_appid) > 12:
        return envelope(int(Code.INVALID_SDKAPPID), "sdkappid is invalid")
    if len(q.getlist("sdkappid")) > 1:  # which one is meant? a proxy may read the other
        return envelope(int(Code.INVALID_SDKAPPID), "sdkappid is given more than once")
    cmd = COMMANDS.get((service, name))
    parsed: BaseModel | Refused | None = None
    if cmd is not None:
        raw = await _read_body(request)
        parsed = (refuse(Code.INVALID_PARAMETER, "invalid parameter: body is larger than 1 MiB")
                  if raw is None else _parse(cmd, raw))
    call = _Call(request, int(raw_appid), cmd, parsed, service, name)
    for attempt in range(5):
        try:
            with events.collecting() as emitted:
                reply = await _call(call)
            if emitted:
                await request.app.state.hub.publish(emitted)
            return envelope(**reply)
        except Refused as e:
            return envelope(int(e.code or Code.INVALID_PARAMETER), e.message)
        except DBAPIError as e:
            if _retryable(e) and attempt < 4:
                await asyncio.sleep(0.01 * (attempt + 1))
                continue
            log.exception("v4 %s/%s failed", service, name)
            return envelope(int(Code.INTERNAL), "internal error; please retry")
        except Exception:
            log.exception("v4 %s/%s failed", service, name)
            return envelope(int(Code.INTERNAL), "internal error; please retry")
    raise AssertionError("unreachable")


async def _call(call: _Call) -> dict[str, Any]:
    """Admit the call (through 10004), hold its message's place (10023), run it.

    The rate checks may wait for Redis, and a SQLite write transaction must not wait
    (it holds the database and runs on the event loop): there, the call is admitted in
    a read transaction of its own first. Elsewhere it is one transaction.
    """
    state = call.request.app.state
    db: Database = state.db
    writes = call.cmd is not None and not call.cmd.read_only
    if writes and db.is_sqlite and state.rates.may_wait:
        async with db.read() as conn:
            await _admit(conn, call)
        async with _message_place(call), db.write() as conn:
            t = await tenant.load(conn, call.sdkappid, state.catalog, state.settings.billing_tz)
            return await _run(conn, t, call)
    async with (db.write() if writes else db.read()) as conn:
        app, now = await _admit(conn, call)
        async with _message_place(call):
            return await _run(conn, tenant.of(app, now, state.catalog,
                                              state.settings.billing_tz), call)


async def _admit(conn: AsyncConnection, call: _Call) -> tuple[apps.App, datetime]:
    """The app, if this call may go on: 60006 → 60016 → 70xxx → 60010 → 60007 → 10003 →
    10004. The REST budget is spent after authentication (junk never spends an app's
    budget) and by every authenticated call, whatever it asks."""
    q = call.request.query_params
    try:
        app, now = await apps.get_at(conn, call.sdkappid)
    except NotFound:
        raise refuse(Code.INVALID_SDKAPPID, f"no app with sdkappid {call.sdkappid}") from None
    if app.plan.status == "disabled":
        raise refuse(Code.APP_DISABLED, "the app is disabled", rule="R6")
    if len(q.getlist("identifier")) > 1 or len(q.getlist("usersig")) > 1:
        raise refuse(Code.USERSIG_MALFORMED, "identifier or usersig is given more than once")
    identifier = q.get("identifier", "")
    try:  # UserSig expiry is real time, even on a simulated clock (SPEC §8)
        usersig.verify(q.get("usersig", ""), call.sdkappid, app.secret_key, identifier,
                       int(time.time()))
    except usersig.UserSigError as e:
        raise refuse(Code(e.code), e.message) from None
    if identifier != app.admin_identifier:
        raise refuse(Code.NOT_ADMIN, "REST calls must be made as the app administrator")
    if not call.counted:
        await call.request.app.state.rates.rest_call(call.sdkappid)
        call.counted = True
    if call.cmd is None:
        raise refuse(Code.UNKNOWN_COMMAND, f"unknown command {call.service}/{call.name}")
    if isinstance(call.parsed, Refused):
        raise call.parsed
    return app, now


def _message_place(call: _Call) -> AbstractAsyncContextManager[None]:
    """A group message's place in its group's second (10023); nothing for other calls."""
    if isinstance(call.parsed, s.SendGroupMsg):
        rates: Rates = call.request.app.state.rates
        return rates.group_message(call.sdkappid, call.parsed.GroupId)
    return nullcontext()


async def _run(conn: AsyncConnection, t: Tenant, call: _Call) -> dict[str, Any]:
    assert call.cmd is not None
    return await call.cmd.run(conn, t, call.parsed)


# ------------------------------------------------------------------ accounts

LOGIN = "im_open_login_svc"
GROUP = "group_open_http_svc"


@command(LOGIN, "account_import", s.AccountImport)
async def account_import(conn: AsyncConnection, t: Tenant, b: s.AccountImport
                         ) -> dict[str, Any]:
    """Import (create) one account."""
    await im_accounts.import_accounts(conn, t, [im_accounts.NewAccount(b.UserID, b.Nick,
                                                                       b.FaceUrl)])
    return {}


@command(LOGIN, "multiaccount_import", s.MultiAccountImport)
async def multiaccount_import(conn: AsyncConnection, t: Tenant, b: s.MultiAccountImport
                              ) -> dict[str, Any]:
    """Import up to 100 accounts at once."""
    await im_accounts.import_accounts(conn, t, [im_accounts.NewAccount(u) for u in b.Accounts])
    return {"FailAccounts": []}


@command(LOGIN, "account_check", s.AccountCheck, read_only=True)
async def account_check(conn: AsyncConnection, t: Tenant, b: s.AccountCheck) -> dict[str, Any]:
    """Which accounts exist."""
    ids = [i.UserID for i in b.CheckItem]
    known = await im_accounts.existing(conn, t.sdkappid, ids)
    return {"ResultItem": [
        {"UserID": u, "ResultCode": 0, "ResultInfo": "",
         "AccountStatus": "Imported" if u in known else "NotImported"} for u in ids]}


@command(LOGIN, "account_delete", s.AccountDelete)
async def account_delete(conn: AsyncConnection, t: Tenant, b: s.AccountDelete
                         ) -> dict[str, Any]:
    """Delete accounts (and their memberships)."""
    ids = [i.UserID for i in b.DeleteItem]
    await im_accounts.delete(conn, t, ids)
    return {"ResultItem": [{"ResultCode": 0, "ResultInfo": "", "UserID": u} for u in ids]}


# ------------------------------------------------------------------ groups


@command(GROUP, "create_group", s.CreateGroup)
async def create_group(conn: AsyncConnection, t: Tenant, b: s.CreateGroup) -> dict[str, Any]:
    """Create a group of one of the five types."""
    gid = await groups.create(conn, t, groups.NewGroup(
        type=b.Type, name=b.Name, owner=b.Owner_Account, group_id=b.GroupId,
        introduction=b.Introduction, notification=b.Notification, face_url=b.FaceUrl,
        max_member_count=b.MaxMemberCount, apply_join_option=b.ApplyJoinOption,
        members=[(m.Member_Account, m.Role or groups.MEMBER) for m in b.MemberList]))
    return {"GroupId": gid}


@command(GROUP, "destroy_group", s.GroupRef)
async def destroy_group(conn: AsyncConnection, t: Tenant, b: s.GroupRef) -> dict[str, Any]:
    """Destroy a group with its members and messages."""
    await groups.destroy(conn, t, b.GroupId)
    return {}


@command(GROUP, "get_group_info", s.GetGroupInfo, read_only=True)
async def get_group_info(conn: AsyncConnection, t: Tenant, b: s.GetGroupInfo
                         ) -> dict[str, Any]:
    """Group profiles."""
    return {"GroupInfo": await groups.get_info(conn, t, b.GroupIdList)}


@command(GROUP, "modify_group_base_info", s.ModifyGroupBaseInfo)
async def modify_group_base_info(conn: AsyncConnection, t: Tenant, b: s.ModifyGroupBaseInfo
                                 ) -> dict[str, Any]:
    """Change a group's profile; MaxMemberNum up to the limit in force (E3)."""
    await groups.modify(conn, t, b.GroupId, name=b.Name, introduction=b.Introduction,
                        notification=b.Notification, face_url=b.FaceUrl,
                        max_member_num=b.MaxMemberNum, apply_join_option=b.ApplyJoinOption)
    return {}


@command(GROUP, "add_group_member", s.AddGroupMember)
async def add_group_member(conn: AsyncConnection, t: Tenant, b: s.AddGroupMember
                           ) -> dict[str, Any]:
    """Add members (all or none, E2)."""
    results = await groups.add_members(conn, t, b.GroupId,
                                       [m.Member_Account for m in b.MemberList])
    return {"MemberList": [{"Member_Account": u, "Result": r} for u, r in results]}


@command(GROUP, "delete_group_member", s.DeleteGroupMember)
async def delete_group_member(conn: AsyncConnection, t: Tenant, b: s.DeleteGroupMember
                              ) -> dict[str, Any]:
    """Remove members."""
    await groups.remove_members(conn, t, b.GroupId, b.MemberToDel_Account)
    return {}


@command(GROUP, "get_group_member_info", s.GetGroupMemberInfo, read_only=True)
async def get_group_member_info(conn: AsyncConnection, t: Tenant, b: s.GetGroupMemberInfo
                                ) -> dict[str, Any]:
    """A group's members."""
    total, rows = await groups.members(conn, t, b.GroupId, b.Limit, b.Offset)
    return {"MemberNum": total, "MemberList": [groups.member_info(m) for m in rows]}


@command(GROUP, "get_joined_group_list", s.GetJoinedGroupList, read_only=True)
async def get_joined_group_list(conn: AsyncConnection, t: Tenant, b: s.GetJoinedGroupList
                                ) -> dict[str, Any]:
    """The groups a user has joined."""
    total, ids = await groups.joined(conn, t, b.Member_Account, b.Limit, b.Offset, b.GroupType)
    return {"TotalCount": total, "GroupIdList": [{"GroupId": g} for g in ids]}


@command(GROUP, "get_appid_group_list", s.GetAppidGroupList, read_only=True)
async def get_appid_group_list(conn: AsyncConnection, t: Tenant, b: s.GetAppidGroupList
                               ) -> dict[str, Any]:
    """Every group of the app, paged by Next."""
    total, ids = await groups.app_groups(conn, t, b.Limit, b.Next, b.GroupType)
    nxt = b.Next + len(ids)
    return {"TotalCount": total, "GroupIdList": [{"GroupId": g} for g in ids],
            "Next": nxt if nxt < total else 0}


@command(GROUP, "send_group_msg", s.SendGroupMsg)
async def send_group_msg(conn: AsyncConnection, t: Tenant, b: s.SendGroupMsg) -> dict[str, Any]:
    """Send a group message; content filtering applies (E4)."""
    seq, at = await messages.send_group(conn, t, b.GroupId, b.From_Account, b.Random,
                                        _body(b.MsgBody))
    return {"MsgTime": int(at.timestamp()), "MsgSeq": seq}


@command(GROUP, "group_msg_get_simple", s.GroupMsgGetSimple, read_only=True)
async def group_msg_get_simple(conn: AsyncConnection, t: Tenant, b: s.GroupMsgGetSimple
                               ) -> dict[str, Any]:
    """A group's history, newest first, within retention (E5)."""
    rows, finished = await messages.group_history(conn, t, b.GroupId, b.ReqMsgNumber,
                                                  b.ReqMsgSeq)
    return {"GroupId": b.GroupId, "IsFinished": 1 if finished else 0, "RspMsgList": [
        {"From_Account": r.from_account, "IsPlaceMsg": 0, "MsgBody": r.msg_body,
         "MsgPriority": 1, "MsgRandom": r.random, "MsgSeq": r.msg_seq,
         "MsgTimeStamp": int(r.sent_at.timestamp())} for r in rows]}


def _body(elems: list[s.MsgElem]) -> list[dict[str, Any]]:
    return [e.model_dump() for e in elems]


# ------------------------------------------------------------------ one-to-one


@command("openim", "sendmsg", s.SendMsg)
async def sendmsg(conn: AsyncConnection, t: Tenant, b: s.SendMsg) -> dict[str, Any]:
    """Send a one-to-one message; content filtering applies (E4)."""
    key, at = await messages.send_c2c(conn, t, b.From_Account, b.To_Account, b.MsgRandom,
                                      _body(b.MsgBody))
    return {"MsgTime": int(at.timestamp()), "MsgKey": key}


@command("openim", "admin_getroammsg", s.AdminGetRoamMsg, read_only=True)
async def admin_getroammsg(conn: AsyncConnection, t: Tenant, b: s.AdminGetRoamMsg
                           ) -> dict[str, Any]:
    """One-to-one history between two users, newest first."""
    before = None
    if b.LastMsgKey:
        head = b.LastMsgKey.split("_", 1)[0]
        if not (head.isascii() and head.isdigit()) or int(head) > 2**63 - 1:
            raise refuse(Code.INVALID_PARAMETER, "invalid parameter: LastMsgKey")
        before = int(head)
    rows, complete = await messages.c2c_history(
        conn, t, b.Operator_Account, b.Peer_Account, b.MaxCnt,
        datetime.fromtimestamp(b.MinTime, UTC), datetime.fromtimestamp(b.MaxTime, UTC), before)
    msgs = [{"From_Account": r.from_account, "To_Account": r.to_account, "MsgSeq": r.id,
             "MsgRandom": r.random, "MsgTimeStamp": int(r.sent_at.timestamp()),
             "MsgFlagBits": 0, "MsgKey": messages.msg_key(r.id, r.random, r.sent_at),
             "MsgBody": r.msg_body} for r in rows]
    return {"Complete": 1 if complete else 0, "MsgCnt": len(msgs),
            "LastMsgTime": msgs[-1]["MsgTimeStamp"] if msgs else 0,
            "LastMsgKey": msgs[-1]["MsgKey"] if msgs else "", "MsgList": msgs}


# ------------------------------------------------------------------ usage


@command("openconfigsvr", "getappinfo", s.GetAppInfo, read_only=True)
async def getappinfo(conn: AsyncConnection, t: Tenant, b: s.GetAppInfo) -> dict[str, Any]:
    """Daily usage of the last 30 days (SPEC §6), newest first."""
    u = usage_daily.c
    rows = list(await conn.execute(sa.select(usage_daily).where(u.sdkappid == t.sdkappid)
                                   .order_by(u.day.desc()).limit(30)))
    result = []
    for r in rows:
        item = {"Date": r.day.strftime("%Y%m%d"), "ActiveUserNum": str(r.dau),
                "GroupNum": str(r.groups), "AVChatRoomNum": str(r.av_rooms),
                "AppId": str(t.sdkappid)}
        if b.RequestField:
            item = {k: v for k, v in item.items() if k in b.RequestField or k == "Date"}
        result.append(item)
    return {"Result": result}


# ------------------------------------------------------------------ routes


QUERY = [
    {"name": n, "in": "query", "required": n in ("sdkappid",), "schema": {"type": t}}
    for n, t in (("sdkappid", "integer"), ("identifier", "string"), ("usersig", "string"),
                 ("random", "integer"), ("contenttype", "string"))
]
ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["ActionStatus", "ErrorCode", "ErrorInfo"],
    "properties": {"ActionStatus": {"type": "string", "enum": ["OK", "FAIL"]},
                   "ErrorCode": {"type": "integer"}, "ErrorInfo": {"type": "string"}},
    "additionalProperties": True,
}


# What some replies carry besides the envelope (the schema stays true: every reply is an
# envelope, and these fields are there when ErrorCode is 0).
REPLY_FIELDS: dict[str, dict[str, Any]] = {
    "create_group": {"GroupId": {"type": "string"}},
    "send_group_msg": {"MsgSeq": {"type": "integer"}, "MsgTime": {"type": "integer"}},
    "sendmsg": {"MsgKey": {"type": "string"}, "MsgTime": {"type": "integer"}},
}


def _op_id(name: str) -> str:
    return f"v4_{name}"


def _link(target: str, body: dict[str, Any], why: str) -> dict[str, Any]:
    return {"operationId": _op_id(target), "requestBody": body, "description": why}


_GID = "$response.body#/GroupId"
_USER = "$request.body#/UserID"
# OpenAPI links: which reply value a later call takes (for readers, and for stateful
# fuzzing, which chains them). The request body of a link is merged into a generated one.
LINKS: dict[str, dict[str, Any]] = {
    "account_import": {
        "CheckImported": _link("account_check", {"CheckItem": [{"UserID": _USER}]},
                               "the imported account exists"),
        "DeleteImported": _link("account_delete", {"DeleteItem": [{"UserID": _USER}]},
                                "delete the imported account"),
        "JoinedGroups": _link("get_joined_group_list", {"Member_Account": _USER},
                              "the groups the imported account joined"),
    },
    "create_group": {
        "GroupInfo": _link("get_group_info", {"GroupIdList": [_GID]}, "the new group"),
        "AddMember": _link("add_group_member", {"GroupId": _GID}, "add to the new group"),
        "Members": _link("get_group_member_info", {"GroupId": _GID}, "its members"),
        "Modify": _link("modify_group_base_info", {"GroupId": _GID}, "change its profile"),
        "Send": _link("send_group_msg", {"GroupId": _GID}, "send to it"),
        "History": _link("group_msg_get_simple", {"GroupId": _GID}, "its history"),
        "RemoveMember": _link("delete_group_member", {"GroupId": _GID}, "remove members"),
        "Destroy": _link("destroy_group", {"GroupId": _GID}, "destroy it"),
    },
    "send_group_msg": {
        "History": _link("group_msg_get_simple", {"GroupId": "$request.body#/GroupId",
                                                  "ReqMsgSeq": "$response.body#/MsgSeq"},
                         "the history up to the message sent"),
    },
    "sendmsg": {
        "Roam": _link("admin_getroammsg", {"Peer_Account": "$request.body#/To_Account"},
                      "the history with the receiver"),
    },
}


def _reply_schema(cmd: Command) -> dict[str, Any]:
    extra = REPLY_FIELDS.get(cmd.name)
    if not extra:
        return ENVELOPE
    return {**ENVELOPE, "properties": {**ENVELOPE["properties"], **extra}}


def _route_for(cmd: Command) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        return await dispatch(request, cmd.service, cmd.name)
    return route


def mount(app: FastAPI) -> None:
    for cmd in COMMANDS.values():
        schema_name = cmd.body.__name__
        app.add_api_route(
            f"/v4/{cmd.service}/{cmd.name}", _route_for(cmd),
            methods=["POST"],
            summary=cmd.summary, tags=[f"v4 {cmd.service}"], response_class=Response,
            name=_op_id(cmd.name), operation_id=_op_id(cmd.name),
            openapi_extra={
                "parameters": QUERY,
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}},
                "responses": {"200": {
                    "description": "Envelope", "links": LINKS.get(cmd.name, {}),
                    "content": {"application/json": {"schema": _reply_schema(cmd)}}}},
            },
        )

        if cmd.read_only:  # clients in the wild GET read-only commands, with a JSON body
            app.add_api_route(f"/v4/{cmd.service}/{cmd.name}", _route_for(cmd),
                              methods=["GET"], include_in_schema=False, response_class=Response)

    async def unknown(request: Request, service: str, name: str) -> Response:
        return await dispatch(request, service, name)

    app.add_api_route("/v4/{service}/{name}", unknown, methods=["POST", "GET"],
                      include_in_schema=False, response_class=Response)

    async def malformed(request: Request, rest: str) -> Response:
        return await dispatch(request, "", rest)  # every v4 reply is an envelope

    app.add_api_route("/v4/{rest:path}", malformed, methods=["POST", "GET"],
                      include_in_schema=False, response_class=Response)


def schemas() -> dict[str, Any]:
    """JSON schemas of every request body, for the OpenAPI components."""
    out: dict[str, Any] = {}
    for cmd in COMMANDS.values():
        schema = cmd.body.model_json_schema(ref_template="#/components/schemas/{model}",
                                            by_alias=True)
        out.update(schema.pop("$defs", {}))
        out[cmd.body.__name__] = schema
    return out
