"""The per-node hub: which local sessions hear which group, and events from the broker.

Ordering (SPEC §9): each session keeps, per group, the next MsgSeq it owes its client.
A message that arrives early (two senders committed 5 and 6, the broker delivered 6
first) waits in a small buffer; if the gap is not closed within GAP_WAIT, the missing
messages are read from the database — they are committed before any later message is
published, because MsgSeq is taken under the group's row lock. Nothing is delivered
twice or out of order, and a resume (`sync`) is the same gap fill from the client's
last seen sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol

import orjson
import sqlalchemy as sa

from imcloud.events import Event
from imcloud.realtime.broker import ALL, Broker, app_channel
from imcloud.services import activity, clock
from imcloud.store.db import Database
from imcloud.store.tables import apps, im_group_messages, im_groups, im_members

log = logging.getLogger("imcloud.hub")

GAP_WAIT = 0.05  # seconds an early message waits for the ones before it
FILL_BATCH = 500
CLOSE_DISABLED = 4003
CLOSE_TOO_SLOW = 4008
CLOSE_GONE = 4004


class Channel(Protocol):
    """What a session needs of its socket."""

    async def send_text(self, text: str) -> None: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...
    def direct(self) -> tuple[Any, asyncio.Event] | None: ...


def text_frame(payload: bytes) -> bytes:
    """A whole unmasked server-to-client text frame (RFC 6455 §5.2), built once per
    message and written as is to every socket that hears it — what
    `websockets.broadcast` does, instead of a frame encode per connection."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def frame_payload(frame: bytes) -> str:
    """The text of a frame from `text_frame`, for sockets written through ASGI."""
    n = frame[1]
    return frame[2 if n < 126 else 4 if n == 126 else 10:].decode()


def encode(frame: dict[str, Any]) -> bytes:
    return text_frame(orjson.dumps(frame))


class Session:
    """One WebSocket connection of one user, with a bounded outbox.

    Lean on purpose (slots, no task while idle, lazy containers): a node holds
    thousands of these. Frames go straight to the socket's transport while it accepts
    them; only when the client reads slower than we write do they wait in the outbox,
    drained by a task that exists only then — so a slow socket holds up only itself,
    and one that falls `limit` frames behind is dropped (4008) and resumes by sequence.
    """

    __slots__ = (
        "_av",
        "_early",
        "_filling",
        "close_code",
        "closed",
        "closing",
        "draining",
        "expected",
        "limit",
        "outbox",
        "sdkappid",
        "transport",
        "user",
        "waiter",
        "writable",
        "ws",
    )

    def __init__(self, sdkappid: int, user: str, ws: Channel, queue_size: int):
        self.sdkappid = sdkappid
        self.user = user
        self.ws = ws
        direct = ws.direct()
        self.transport: Any = direct[0] if direct else None
        self.writable: asyncio.Event | None = direct[1] if direct else None
        self.limit = queue_size
        # Held until `open`: frames wait while the hub registers the session, so the
        # client's first frame (login) means every group it is in is followed.
        self.outbox: deque[bytes] | None = deque()  # only while frames wait
        self.draining = True
        self.expected: dict[str, int] = {}  # group -> next MsgSeq owed to the client
        self._early: dict[str, dict[int, Event]] | None = None
        self._filling: dict[str, asyncio.Task[None]] | None = None
        self._av: set[str] | None = None
        self.closed = False
        self.close_code: int | None = None
        self.closing: asyncio.Task[None] | None = None  # the close frame being sent
        self.waiter: asyncio.Event | None = None  # a resume waiting for outbox room

    @property
    def early(self) -> dict[str, dict[int, Event]]:
        """group -> seq -> a message that arrived before the ones it follows."""
        if self._early is None:
            self._early = {}
        return self._early

    @property
    def filling(self) -> dict[str, asyncio.Task[None]]:
        """group -> the task reading stored messages into this session."""
        if self._filling is None:
            self._filling = {}
        return self._filling

    @property
    def av_groups(self) -> set[str]:
        """AVChatRoom groups this connection is in (membership lives with it)."""
        if self._av is None:
            self._av = set()
        return self._av

    def waiting(self, group: str) -> dict[int, Event] | None:
        """The early messages of `group`, without allocating for the common none."""
        return self._early.get(group) if self._early else None

    def is_filling(self, group: str) -> bool:
        return self._filling is not None and group in self._filling

    def forget(self, group: str) -> None:
        """Drop what the session keeps for `group` (it no longer hears it)."""
        if self._early:
            self._early.pop(group, None)
        if self._av:
            self._av.discard(group)
        if self._filling:
            task = self._filling.pop(group, None)
            if task is not None:
                task.cancel()

    async def room(self) -> None:
        """Wait until the outbox is at most half full: a resume feeds its backlog at the
        client's pace instead of overflowing the queue meant for live messages."""
        while (self.outbox is not None and len(self.outbox) > self.limit // 2
               and not self.closed):
            if self.waiter is None:
                self.waiter = asyncio.Event()
            await self.waiter.wait()

    def _wake(self) -> None:
        if self.waiter is not None:
            self.waiter.set()
            self.waiter = None

    def open(self, first: dict[str, Any]) -> None:
        """Send `first`, then what was pushed while the session was being registered."""
        held, self.outbox, self.draining = self.outbox, None, False
        self.push(first)
        for frame in held or ():
            self.push_frame(frame)

    def push(self, frame: dict[str, Any]) -> None:
        self.push_frame(encode(frame))

    def push_frame(self, frame: bytes) -> None:
        """Send a frame from `text_frame`, in order after every frame pushed before."""
        if self.closed:
            return
        out = self.outbox
        if out is None:
            t, w = self.transport, self.writable
            if t is not None and w is not None and w.is_set():
                if t.is_closing():
                    self.closed = True
                else:
                    t.write(frame)
                return
            self.outbox = out = deque()
        elif len(out) >= self.limit:  # too far behind: drop it; resume by seq
            self.shut(CLOSE_TOO_SLOW, "too slow; reconnect and resume by sequence")
            return
        out.append(frame)
        if not self.draining:
            self.draining = True
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            t, w = self.transport, self.writable
            while self.outbox and not self.closed:
                if t is not None and w is not None:
                    await w.wait()
                    if t.is_closing():
                        self.closed = True
                        break
                    while self.outbox and w.is_set():
                        t.write(self.outbox.popleft())
                else:
                    await self.ws.send_text(frame_payload(self.outbox.popleft()))
                if self.waiter is not None and len(self.outbox or ()) <= self.limit // 2:
                    self._wake()
        except Exception:  # the socket is gone; the receive loop will notice
            self.closed = True
        finally:
            self.draining = False
            if not self.outbox:
                self.outbox = None
                self._wake()

    def shut(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.outbox = None
        for task in (self._filling or {}).values():
            task.cancel()
        self._wake()
        self.closing = asyncio.get_running_loop().create_task(self._closing(code, reason))

    async def _closing(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)


def message_frame(group: str, seq: int, sender: str, random: int, body: Any,
                  time: int) -> dict[str, Any]:
    return {"op": "msg", "group": group, "seq": seq, "from": sender, "random": random,
            "body": body, "time": time}


class Hub:
    def __init__(self, db: Database, broker: Broker, *, queue_size: int = 1000,
                 poll_seconds: float = 0.25):
        self.db = db
        self.broker = broker
        self.queue_size = queue_size
        self.poll_seconds = poll_seconds
        self.by_user: dict[tuple[int, str], set[Session]] = defaultdict(set)
        self.by_group: dict[tuple[int, str], set[Session]] = defaultdict(set)
        self.revisions: dict[int, int] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.day: date | None = None
        self.deliveries = 0

    # ---------------------------------------------------------------- lifecycle

    async def start(self, tz: Any) -> None:
        await self.broker.start(self.on_event)
        self.tasks.append(asyncio.create_task(self._watch_apps(tz)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sessions in list(self.by_user.values()):
            for s in list(sessions):
                s.shut(1001, "server shutting down; resume by sequence")
        await self.broker.close()

    def sessions_of_app(self, sdkappid: int) -> list[Session]:
        return [s for (a, _), ss in self.by_user.items() if a == sdkappid for s in ss]

    @property
    def connections(self) -> int:
        return sum(len(ss) for ss in self.by_user.values())

    # ---------------------------------------------------------------- sessions

    async def register(self, s: Session, revision: int,
                       since: Mapping[str, int] | None = None) -> None:
        """Follow the user's groups; those in `since` (a reconnecting client's last seen
        sequences) resume from there, with no window for a live message to slip in."""
        first_of_app = not self.sessions_of_app(s.sdkappid)
        self.by_user[(s.sdkappid, s.user)].add(s)
        self.revisions.setdefault(s.sdkappid, revision)
        if first_of_app:
            await self.broker.subscribe(app_channel(s.sdkappid))
        async with self.db.read() as conn:
            g, m = im_groups.c, im_members.c
            rows = list(await conn.execute(
                sa.select(g.group_id, g.last_msg_seq)
                .select_from(im_groups.join(im_members, sa.and_(m.sdkappid == g.sdkappid,
                                                                m.group_id == g.group_id)))
                .where(g.sdkappid == s.sdkappid, m.user_id == s.user)))
        for r in rows:
            self.follow(s, r.group_id, int(r.last_msg_seq), (since or {}).get(r.group_id))

    async def unregister(self, s: Session) -> None:
        self.by_user[(s.sdkappid, s.user)].discard(s)
        if not self.by_user[(s.sdkappid, s.user)]:
            del self.by_user[(s.sdkappid, s.user)]
        for g in list(s.expected):
            self.unfollow(s, g)
        if not self.sessions_of_app(s.sdkappid):
            self.revisions.pop(s.sdkappid, None)
            await self.broker.unsubscribe(app_channel(s.sdkappid))

    def follow(self, s: Session, group: str, last_seq: int, after: int | None = None) -> None:
        """From now on, s hears `group` from the message after `last_seq` — or, resuming,
        after `after` (stored messages first, then live ones, each once)."""
        if group in s.expected:
            return
        self.by_group[(s.sdkappid, group)].add(s)
        if after is None or after >= last_seq:
            s.expected[group] = last_seq + 1
            return
        s.expected[group] = max(after, 0) + 1
        s.filling[group] = asyncio.get_running_loop().create_task(self._resume(s, group))

    async def _resume(self, s: Session, group: str) -> None:
        try:
            await self._fill(s, group, None)
        except asyncio.CancelledError:
            pass
        finally:
            s.filling.pop(group, None)

    def unfollow(self, s: Session, group: str) -> None:
        self.by_group[(s.sdkappid, group)].discard(s)
        if not self.by_group[(s.sdkappid, group)]:
            del self.by_group[(s.sdkappid, group)]
        s.expected.pop(group, None)
        s.forget(group)

    async def sync(self, s: Session, group: str, after: int) -> int:
        """Resume: send every kept message after `after`, then live ones, exactly once."""
        s.expected[group] = after + 1
        early = s.waiting(group)
        if early:
            s.early[group] = {k: v for k, v in early.items() if k > after}
        return await self._fill(s, group, None)

    # ---------------------------------------------------------------- delivery

    async def publish(self, events: list[Event]) -> None:
        for ev in events:
            channel = ALL if ev["kind"] == "app_changed" else app_channel(ev["sdkappid"])
            await self.broker.publish(channel, ev)

    async def on_event(self, ev: Event) -> None:
        kind, app = ev["kind"], ev["sdkappid"]
        if kind == "group_msg":
            encoded = encode(message_frame(ev["group"], ev["seq"], ev["sender"],
                                           ev["random"], ev["body"], ev["time"]))
            for s in list(self.by_group.get((app, ev["group"]), ())):
                self._deliver(s, ev, encoded)
        elif kind == "c2c_msg":
            frame = {"op": "c2c", "from": ev["sender"], "to": ev["to"], "key": ev["key"],
                     "random": ev["random"], "body": ev["body"], "time": ev["time"]}
            for user in {ev["to"], ev["sender"]}:
                for s in list(self.by_user.get((app, user), ())):
                    s.push(frame)
                    self.deliveries += 1
        elif kind == "members_added":
            for user in ev["users"]:
                for s in list(self.by_user.get((app, user), ())):
                    self.follow(s, ev["group"], int(ev.get("seq", 0)))
                    s.push({"op": "joined", "group": ev["group"]})
        elif kind in ("members_removed", "group_destroyed"):
            users = ev.get("users")
            for s in list(self.by_group.get((app, ev["group"]), ())):
                if users is None or s.user in users:
                    self.unfollow(s, ev["group"])
                    s.push({"op": "left", "group": ev["group"]})
        elif kind == "accounts_deleted":
            for user in ev["users"]:
                for s in list(self.by_user.get((app, user), ())):
                    s.shut(CLOSE_GONE, "account deleted")
        elif kind == "app_changed":
            self._app_changed(app, ev["status"], int(ev["revision"]))

    def _deliver(self, s: Session, ev: Event, encoded: bytes | None = None) -> None:
        group, seq = ev["group"], int(ev["seq"])
        want = s.expected.get(group)
        if want is None or seq < want:
            return  # not following, or already delivered
        if seq > want:
            s.early.setdefault(group, {})[seq] = ev
            if not s.is_filling(group):
                s.filling[group] = asyncio.get_running_loop().create_task(
                    self._fill_later(s, group))
            return
        s.push_frame(encoded or encode(message_frame(
            group, seq, ev["sender"], ev["random"], ev["body"], ev["time"])))
        self.deliveries += 1
        s.expected[group] = seq + 1
        early = s.waiting(group)
        if early:
            nxt = early.pop(seq + 1, None)
            if nxt is not None:
                self._deliver(s, nxt)

    async def _fill_later(self, s: Session, group: str) -> None:
        try:
            await asyncio.sleep(GAP_WAIT)
            early = s.waiting(group)
            if early:
                await self._fill(s, group, max(early))
        except asyncio.CancelledError:
            pass
        finally:
            s.filling.pop(group, None)

    async def _fill(self, s: Session, group: str, upto: int | None) -> int:
        """Deliver stored messages from the session's next expected seq (to `upto`);
        the last seq the client now has."""
        m = im_group_messages.c
        while not s.closed and group in s.expected:
            q = (sa.select(m.msg_seq, m.from_account, m.random, m.msg_body, m.sent_at)
                 .where(m.sdkappid == s.sdkappid, m.group_id == group,
                        m.msg_seq >= s.expected[group])
                 .order_by(m.msg_seq).limit(FILL_BATCH))
            if upto is not None:
                q = q.where(m.msg_seq <= upto)
            async with self.db.read() as conn:
                rows = list(await conn.execute(q))
            for r in rows:
                await s.room()
                if group not in s.expected or s.closed:
                    break
                # a seq missing from storage was purged (E5): skip past it
                s.expected[group] = max(s.expected[group], int(r.msg_seq))
                self._deliver(s, {"group": group, "seq": int(r.msg_seq),
                                  "sender": r.from_account, "random": r.random,
                                  "body": r.msg_body, "time": int(r.sent_at.timestamp())})
            if len(rows) < FILL_BATCH:
                early = s.waiting(group)
                if early and group in s.expected and min(early) > s.expected[group]:
                    s.expected[group] = min(early)  # the gap is gone from storage
                    self._deliver(s, early.pop(min(early)))
                break
        return s.expected.get(group, 1) - 1

    # ---------------------------------------------------------------- plan changes

    def _app_changed(self, app: int, status: str, revision: int) -> None:
        self.revisions[app] = max(revision, self.revisions.get(app, 0))
        if status == "disabled":  # R6: every session of the app, at once
            for s in self.sessions_of_app(app):
                s.shut(CLOSE_DISABLED, "the app is disabled")

    async def _watch_apps(self, tz: Any) -> None:
        """Changes made where no broker reaches (the CLI on a shared database) are seen
        by polling the apps this node serves; a new day re-counts open sessions (§6)."""
        while True:
            try:
                await asyncio.sleep(self.poll_seconds)
                served = list(self.revisions)
                async with self.db.read() as conn:
                    if served:
                        rows = await conn.execute(
                            sa.select(apps.c.sdkappid, apps.c.status, apps.c.revision)
                            .where(apps.c.sdkappid.in_(served)))
                        for r in rows:
                            if int(r.revision) > self.revisions.get(int(r.sdkappid), 0):
                                self._app_changed(int(r.sdkappid), r.status, int(r.revision))
                    today = (await clock.now(conn)).astimezone(tz).date()
                if self.day is not None and today != self.day:
                    await self._count_open_sessions(today)
                self.day = today
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("app watcher failed")

    async def _count_open_sessions(self, day: date) -> None:
        users = {(a, u) for (a, u), ss in self.by_user.items() if ss}
        for app, user in users:
            async with self.db.write() as conn:
                await activity.mark_active(conn, app, user, day, None)
