"""The WebSocket gateway `/v1/ws` (SPEC §9): a thin adapter over the services and hub.

Connect with `?sdkappid=&identifier=&usersig=` (the user's own UserSig). Frames are
JSON objects; requests carry an `id` that the reply (`op: "ack"`) repeats:

    {"id": 1, "op": "join", "group": "g1"}
        -> {"op": "ack", "id": 1, "code": 0, "seq": 41}
    {"id": 2, "op": "sync", "group": "g1", "after": 38}
        -> messages 39..41, then the ack
    {"id": 3, "op": "send_group", "group": "g1", "random": 7, "body": [...]}
        -> {"op": "ack", "id": 3, "code": 0, "seq": 42, "time": ...}
    {"id": 4, "op": "send_c2c", "to": "bob", "random": 8, "body": [...]}
        -> {"op": "ack", "id": 4, "code": 0, "key": "...", "time": ...}
    {"id": 5, "op": "quit", "group": "g1"}
    pushed: {"op": "msg", "group", "seq", "from", "random", "body", "time"}
            {"op": "c2c", "from", "to", "key", "random", "body", "time"}
            {"op": "joined"|"left", "group"}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, Field, ValidationError

from imcloud import events
from imcloud.api import v4_schemas as s
from imcloud.errors import Code, NotFound, Refused, refuse
from imcloud.im import rules, usersig
from imcloud.ops import metrics
from imcloud.realtime.hub import CLOSE_DISABLED, Hub, Session
from imcloud.services import activity, apps, groups, messages, tenant
from imcloud.services.im_accounts import must_exist
from imcloud.services.tenant import Tenant

log = logging.getLogger("imcloud.ws")
router = APIRouter()
CLOSE_INTERNAL = 1011  # RFC 6455: the server hit a condition it could not handle


class Join(s.Body):
    group: s.GroupIdT
    after: Annotated[int, Field(ge=0)] | None = None  # resume: the last seq seen


class Sync(s.Body):
    group: s.GroupIdT
    after: int = 0


class SendGroup(s.Body):
    group: s.GroupIdT
    random: s.U32 = 0
    body: s.MsgBody


class SendC2C(s.Body):
    to: s.UserIdT
    random: s.U32 = 0
    body: s.MsgBody


REQUESTS: dict[str, type[BaseModel]] = {
    "join": Join, "quit": Join, "sync": Sync, "send_group": SendGroup, "send_c2c": SendC2C}


class Disconnected(Exception):
    pass


class Socket:
    """The ASGI WebSocket calls the gateway makes, and nothing else: a node holds
    thousands of these, and every byte per connection counts (≤ 20 KiB idle)."""

    __slots__ = ("_receive", "_send", "app", "scope")

    def __init__(self, scope: Any, receive: Any, send: Any):
        self.scope = scope
        self.app = scope["app"]
        self._receive = receive
        self._send = send

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    async def accept(self) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise Disconnected
        await self._send({"type": "websocket.accept"})

    def direct(self) -> tuple[Any, asyncio.Event] | None:
        """The server's transport and its writable flag, when frames may be written to
        it directly: uvicorn's wsproto protocol (`imcloud serve`), no per-message
        compression negotiated. Elsewhere (tests through the framework, another
        server) every frame goes through the ASGI `send`."""
        proto = getattr(self._receive, "__self__", None)
        transport = getattr(proto, "transport", None)
        writable = getattr(proto, "writable", None)
        if (transport is None or not isinstance(writable, asyncio.Event)
                or self.app.state.settings.ws_compression):
            return None
        return transport, writable

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    async def receive_text(self) -> str:
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            raise Disconnected
        text = message.get("text")
        return text if text is not None else bytes(message.get("bytes") or b"").decode()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


@router.websocket("/v1/ws")
async def route(ws: WebSocket) -> None:
    await gateway(Socket(ws.scope, ws.receive, ws.send))


async def gateway(ws: Socket) -> None:
    state = ws.app.state
    hub: Hub = state.hub
    try:
        await ws.accept()
    except Disconnected:
        return
    try:
        app_id, user, revision, since = await _login(ws)
    except Refused as e:
        metrics.refused("ws", e.code)
        await _send(ws, {"op": "error", "code": e.code, "info": e.message})
        await ws.close(code=CLOSE_DISABLED if e.code == Code.APP_DISABLED else 4001)
        return
    except Exception:  # the database is unreachable, say: an error frame, not a bare drop
        log.exception("login failed")
        await _send(ws, {"op": "error", "code": int(Code.INTERNAL),
                         "info": "internal error; please retry"})
        await ws.close(code=CLOSE_INTERNAL)
        return

    session = Session(app_id, user, ws, state.settings.ws_queue)
    try:
        await hub.register(session, revision, since)
        session.open({"op": "login", "code": 0, "user": user})
        while not session.closed:
            raw = await ws.receive_text()
            await _handle(ws, hub, session, raw)
    except Disconnected:
        pass
    except Exception:
        log.exception("session failed")
        session.shut(CLOSE_INTERNAL, "internal error; reconnect and resume by sequence")
    finally:
        if session.closing is not None:  # let the close frame (4003, 4008…) go out
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(session.closing), 2)
        session.closed = True
        await hub.unregister(session)


async def _send(ws: Socket, frame: dict[str, Any]) -> None:
    await ws.send_text(orjson.dumps(frame).decode())


async def _login(ws: Socket) -> tuple[int, str, int, dict[str, int]]:
    """Same checks as REST, for the user's own sig; counts the user active (DAU)."""
    q = ws.query()
    raw = q.get("sdkappid", "")
    if not raw:
        raise refuse(Code.MISSING_SDKAPPID, "sdkappid is missing")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise refuse(Code.INVALID_SDKAPPID, "sdkappid is invalid")
    state = ws.app.state
    user = q.get("identifier", "")
    since = _since(q.get("since"))
    async with state.db.write() as conn:
        try:
            app, now = await apps.get_at(conn, int(raw))
        except NotFound:
            raise refuse(Code.INVALID_SDKAPPID, "no such app") from None
        if app.plan.status == "disabled":
            raise refuse(Code.APP_DISABLED, "the app is disabled", rule="R6")
        try:
            usersig.verify(q.get("usersig", ""), app.sdkappid, app.secret_key, user,
                           int(time.time()))
        except usersig.UserSigError as e:
            raise refuse(Code(e.code), e.message) from None
        t = tenant.of(app, now, state.catalog, state.settings.billing_tz)
        if user != app.admin_identifier:
            await must_exist(conn, t, user)
        await activity.mark_active(conn, app.sdkappid, user, t.today, t.limits["dau"])
    return app.sdkappid, user, app.revision, since


def _since(raw: str | None) -> dict[str, int]:
    """`since={"group": last_seen_seq, ...}`: a reconnecting client's resume points."""
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in value.items()):
        raise refuse(Code.INVALID_PARAMETER,
                     'invalid parameter: since must be a JSON object {"group": seq}')
    return value


async def _handle(ws: Socket, hub: Hub, session: Session, raw: str) -> None:
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        session.push({"op": "ack", "id": None, "code": int(Code.INVALID_PARAMETER),
                      "info": "not JSON"})
        return
    if not isinstance(frame, dict):
        session.push({"op": "ack", "id": None, "code": int(Code.INVALID_PARAMETER),
                      "info": "a frame is a JSON object"})
        return
    rid = frame.get("id")
    op = frame.get("op")
    model = REQUESTS.get(op) if isinstance(op, str) else None
    try:
        if model is None:
            raise refuse(Code.UNKNOWN_COMMAND, f"unknown op {op!r}")
        try:
            req = model.model_validate(frame)
        except ValidationError as e:
            err = e.errors()[0]
            raise refuse(Code.INVALID_PARAMETER,
                         f"invalid parameter: {'.'.join(map(str, err['loc']))}: "
                         f"{err['msg']}") from None
        reply = await OPS[str(op)](ws, hub, session, req)
        session.push({"op": "ack", "id": rid, "code": 0, **reply})
    except Refused as e:
        metrics.refused("ws", e.code)
        session.push({"op": "ack", "id": rid, "code": e.code, "info": e.message})


async def _write(ws: Socket, hub: Hub, session: Session,
                 work: Callable[[Any, Tenant], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a service in a write transaction; publish its events after commit."""
    state = ws.app.state
    with events.collecting() as emitted:
        async with state.db.write() as conn:
            t = await tenant.load(conn, session.sdkappid, state.catalog,
                                  state.settings.billing_tz)
            reply = await work(conn, t)
    await hub.publish(emitted)
    return reply


async def _join(ws: Socket, hub: Hub, session: Session, req: Join) -> dict[str, Any]:
    async def work(conn: Any, t: Tenant) -> dict[str, Any]:
        g = (await groups.get_info(conn, t, [req.group]))[0]
        if g["ErrorCode"]:
            raise refuse(Code.GROUP_NOT_FOUND, f"group {req.group!r} does not exist")
        if not rules.client_may_join(g["Type"], g["ApplyJoinOption"]):
            raise refuse(Code.NO_PERMISSION, "this group cannot be joined by clients")
        if g["Type"] != rules.AV:
            await groups.add_members(conn, t, req.group, [session.user], by_admin=False)
        return {"seq": g["NextMsgSeq"] - 1, "type": g["Type"]}

    reply = await _write(ws, hub, session, work)
    hub.follow(session, req.group, reply["seq"], req.after)
    if reply["type"] == rules.AV:  # AVChatRoom membership lives with the connection
        session.av_groups.add(req.group)
    return {"group": req.group, "seq": reply["seq"]}


async def _quit(ws: Socket, hub: Hub, session: Session, req: Join) -> dict[str, Any]:
    if req.group in session.av_groups:
        hub.unfollow(session, req.group)
        return {"group": req.group}

    async def work(conn: Any, t: Tenant) -> dict[str, Any]:
        await groups.remove_members(conn, t, req.group, [session.user])
        return {}

    await _write(ws, hub, session, work)
    hub.unfollow(session, req.group)
    return {"group": req.group}


async def _sync(ws: Socket, hub: Hub, session: Session, req: Sync) -> dict[str, Any]:
    if req.group not in session.expected:
        raise refuse(Code.NO_PERMISSION, f"not a member of {req.group!r}")
    return {"group": req.group, "seq": await hub.sync(session, req.group, req.after)}


async def _send_group(ws: Socket, hub: Hub, session: Session, req: SendGroup
                      ) -> dict[str, Any]:
    if req.group not in session.expected:  # members, and AVChatRoom visitors while here
        raise refuse(Code.NO_PERMISSION, f"join {req.group!r} before sending to it")

    async def work(conn: Any, t: Tenant) -> dict[str, Any]:
        seq, at = await messages.send_group(conn, t, req.group, session.user, req.random,
                                            [e.model_dump() for e in req.body])
        return {"seq": seq, "time": int(at.timestamp())}

    async with ws.app.state.rates.group_message(session.sdkappid, req.group):  # 10023
        return await _write(ws, hub, session, work)


async def _send_c2c(ws: Socket, hub: Hub, session: Session, req: SendC2C
                    ) -> dict[str, Any]:
    async def work(conn: Any, t: Tenant) -> dict[str, Any]:
        key, at = await messages.send_c2c(conn, t, session.user, req.to, req.random,
                                          [e.model_dump() for e in req.body])
        return {"key": key, "time": int(at.timestamp())}

    return await _write(ws, hub, session, work)


OPS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "join": _join, "quit": _quit, "sync": _sync, "send_group": _send_group,
    "send_c2c": _send_c2c}
