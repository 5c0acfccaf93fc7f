"""The real-time gateway over real sockets on 127.0.0.1 (SPEC §9, §6, R6, E4), on SQLite
and on PostgreSQL.

`imcloud serve` runs as a separate process on a fresh database — one per backend for
the module, plus one with a short outgoing queue for the slow-client tests; apps are
tenants, so each test makes its own and never meets another's rows or sessions. Tests
talk to it the way a deployment's clients do: users through the project's own
`imcloud.client.ChatClient`, the app's backend through v4 REST calls. Where a test must
prove what the *server* sent (order, exactly once), it reads a bare WebSocket
(`RawSocket`) that keeps every frame as it arrived: the ChatClient silently drops a
sequence it has already seen, which would hide a duplicate.

The database runs on a simulated clock (START) that only the DAU test moves, and only
forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import shutil
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from imcloud.client import AdminClient, ChatClient, ClientError, user_sig
from tests.conftest import (
    Cli,
    _pg_url_for,
    drop_postgres_db,
    need_postgres,
    new_postgres_db,
    run,
)
from tests.v4client import Node

T = TypeVar("T")

START = "2019-03-01T12:00:00"
# One housekeeping pass at start (while the database has no app), then none: only the
# calls under test write an app's rows.
QUIET = {"IMCLOUD_BILL_CHECK_SECONDS": "86400"}

LOGIN = "im_open_login_svc"
GROUP = "group_open_http_svc"
MULTI_IMPORT = f"{LOGIN}/multiaccount_import"
DELETE = f"{LOGIN}/account_delete"
CREATE = f"{GROUP}/create_group"
INFO = f"{GROUP}/get_group_info"
ADD = f"{GROUP}/add_group_member"
SEND_GROUP = f"{GROUP}/send_group_msg"
GROUP_HISTORY = f"{GROUP}/group_msg_get_simple"
SENDMSG = "openim/sendmsg"
ROAM = "openim/admin_getroammsg"

APP_DISABLED, NO_PERMISSION, ACCOUNT_NOT_FOUND = 60016, 10007, 10019
BAD_SIGNATURE, MALFORMED_SIG, IDENTIFIER_MISMATCH = 70009, 70003, 70013
INVALID_SDKAPPID, MISSING_SDKAPPID = 60006, 60012
TRIAL_DAU_LIMIT, CONTENT_BLOCKED, GROUP_FULL = 72000, 80001, 10014
CLOSE_DISABLED, CLOSE_TOO_SLOW, CLOSE_REFUSED, CLOSE_GONE = 4003, 4008, 4001, 4004

WAIT = 20.0  # seconds any single expected frame may take before a test gives up


# ------------------------------------------------------------------ servers


@dataclass
class App:
    sdkappid: int
    name: str
    key: str

    def sig(self, user: str, expire: int = 3600) -> str:
        return user_sig(self.sdkappid, self.key, user, expire)


class Env:
    """One database (simulated clock), the CLI for it and `imcloud serve` node(s) on it."""

    def __init__(self, db_url: str, imcloud: Cli, nodes: list[Node]):
        self.db_url = db_url
        self.imcloud = imcloud
        self.nodes = nodes
        self._names = itertools.count(1)

    @property
    def base(self) -> str:
        return self.nodes[0].base

    def new_app(self, edition: str | None = None, *options: str) -> App:
        shown = self.imcloud("app", "create", f"rt{next(self._names)}")
        app = App(shown["sdkappid"], shown["name"], shown["secret_key"])
        if edition is not None:
            up = self.imcloud("app", "upgrade", str(app.sdkappid), "--edition", edition,
                              *options)
            assert up["service_version"].lower() == edition, up
        return app


@contextmanager
def serving(db_url: str, nodes: int = 1, env: dict[str, str] | None = None,
            clock: str = START) -> Iterator[Env]:
    imcloud = Cli(db_url)
    imcloud("init", "--simulated-clock", clock)
    started: list[Node] = []
    try:
        with ThreadPoolExecutor(nodes) as pool:  # processes start side by side
            futures = [pool.submit(Node, db_url, {**QUIET, **(env or {})}) for _ in range(nodes)]
        started += [f.result() for f in futures if f.exception() is None]
        for f in futures:
            f.result()  # a node that failed to start fails the test
        yield Env(db_url, imcloud, started)
    finally:
        for node in started:
            node.stop()
    problems = [line for node in started for line in node.problems()]
    assert not problems, "".join(problems[:60])


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def fresh_database(request: pytest.FixtureRequest, backend: str) -> Iterator[str]:
    """Like the `db_url` fixture, for a module-scoped server (a server takes seconds to
    start on a busy 2-core machine; apps are tenants, so tests sharing one don't meet)."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        folder = request.getfixturevalue("tmp_path_factory").mktemp("realtime")
        shutil.copy(template, folder / "imcloud.db")
        yield f"sqlite:///{folder / 'imcloud.db'}"
    else:
        name = new_postgres_db(request.getfixturevalue("postgres_template"))
        try:
            yield _pg_url_for(need_postgres(), name)
        finally:
            drop_postgres_db(name)


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """One database and one `imcloud serve` per backend for the tests of this module."""
    with fresh_database(request, request.param) as url, serving(url) as e:
        yield e


# ------------------------------------------------------------------ clients


def ws_url(base: str, sdkappid: int | str, user: str, sig: str) -> str:
    query = urlencode({"sdkappid": sdkappid, "identifier": user, "usersig": sig})
    return f"{base.replace('http://', 'ws://')}/v1/ws?{query}"


async def chat(base: str, app: App, user: str) -> ChatClient:
    return await ChatClient.connect(base, app.sdkappid, user, app.sig(user))


def admin(base: str, app: App) -> AdminClient:
    return AdminClient(base, app.sdkappid, app.key)


def text(s: str) -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": s}}]


def text_of(frame: dict[str, Any]) -> str:
    return str(frame["body"][0]["MsgContent"]["Text"])


async def import_users(adm: AdminClient, users: list[str]) -> None:
    for i in range(0, len(users), 100):
        reply = await adm.call(MULTI_IMPORT, {"Accounts": users[i:i + 100]})
        assert not reply.get("FailAccounts"), reply


async def next_of(client: ChatClient, op: str, sender: str | None = None,
                  timeout: float = WAIT) -> dict[str, Any]:
    """The next frame with this op (and sender) from the client's inbox; the frames
    before it are dropped."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await client.next(max(0.01, deadline - time.monotonic()))
        if frame.get("op") == op and sender in (None, frame.get("from")):
            return frame


def drain(client: ChatClient) -> list[dict[str, Any]]:
    """Every frame waiting in the client's inbox."""
    out = []
    while not client.inbox.empty():
        out.append(client.inbox.get_nowait())
    return out


async def quiet(client: ChatClient, op: str, seconds: float = 0.5) -> None:
    """Nothing with this op arrives for `seconds`."""
    await asyncio.sleep(seconds)
    got = [f for f in drain(client) if f.get("op") == op]
    assert not got, got


class RawSocket:
    """A bare WebSocket session: every frame exactly as the server sent it, no dedupe."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.arrived = asyncio.Condition()
        self._ids = itertools.count(1)
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def at(cls, url: str) -> RawSocket:
        return cls(await connect(url, compression=None, max_size=2**22))

    @classmethod
    async def open(cls, base: str, app: App, user: str,
                   since: dict[str, int] | None = None) -> RawSocket:
        """A logged-in session of `user`."""
        url = ws_url(base, app.sdkappid, user, app.sig(user))
        if since is not None:
            url += "&" + urlencode({"since": orjson.dumps(since).decode()})
        raw = await cls.at(url)
        first = await raw.wait_for(lambda f: True)
        assert first == {"op": "login", "code": 0, "user": user}, first
        return raw

    async def refused(self) -> tuple[int, int | None]:
        """For a login the server refuses: the error frame's code and the close code."""
        first = await self.wait_for(lambda f: True)
        assert first["op"] == "error" and first["info"], first
        return int(first["code"]), await self.closed()

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                async with self.arrived:
                    self.frames.append(orjson.loads(data))
                    self.arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            async with self.arrived:
                self.arrived.notify_all()

    def msgs(self, group: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames
                if f.get("op") == "msg" and (group is None or f["group"] == group)]

    async def wait_for(self, test: Callable[[dict[str, Any]], bool],
                       timeout: float = WAIT) -> dict[str, Any]:
        """The first frame (already arrived or not) that passes `test`."""
        async def look() -> dict[str, Any]:
            seen = 0
            async with self.arrived:
                while True:
                    for f in self.frames[seen:]:
                        if test(f):
                            return f
                    seen = len(self.frames)
                    if self.reader.done():
                        raise AssertionError(f"socket closed ({self.ws.close_code})")
                    await self.arrived.wait()
        return await asyncio.wait_for(look(), timeout)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = next(self._ids)
        await self.ws.send(orjson.dumps({"id": rid, "op": op, **fields}).decode())
        return await self.wait_for(lambda f: f.get("op") == "ack" and f.get("id") == rid)

    async def closed(self, timeout: float = WAIT) -> int | None:
        await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


async def closes(ws_client: ChatClient, timeout: float = WAIT) -> float:
    """Wait until the client's socket is closed; when (monotonic)."""
    await asyncio.wait_for(ws_client.closed.wait(), timeout)
    return time.monotonic()


async def gather_limited(n: int, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    sem = asyncio.Semaphore(n)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs))


# ------------------------------------------------------------------ chat


def test_two_users_chat_in_a_group_and_one_to_one(env: Env) -> None:
    app = env.new_app()

    async def scenario() -> None:
        async with admin(env.base, app) as adm:
            await import_users(adm, ["alice", "bob"])
            gid = (await adm.call(CREATE, {"Type": "Public", "Name": "pub",
                                           "ApplyJoinOption": "FreeAccess"}))["GroupId"]
            alice, bob = await chat(env.base, app, "alice"), await chat(env.base, app, "bob")
            try:
                assert (alice.user, bob.user) == ("alice", "bob")
                assert await alice.join(gid) == 0
                assert await bob.join(gid) == 0
                seq = await alice.send_group(gid, "hello bob")
                assert seq == 1
                got = await next_of(bob, "msg")
                assert (got["group"], got["seq"], got["from"], text_of(got)) == (
                    gid, 1, "alice", "hello bob")
                assert (await next_of(alice, "msg"))["seq"] == 1  # the sender hears it too
                assert await bob.send_group(gid, "hi alice") == 2
                got = await next_of(alice, "msg")
                assert (got["seq"], got["from"], text_of(got)) == (2, "bob", "hi alice")

                key = await alice.send_c2c("bob", "psst")
                got = await next_of(bob, "c2c")
                assert (got["from"], got["to"], got["key"], text_of(got)) == (
                    "alice", "bob", key, "psst")
                echo = await next_of(alice, "c2c")  # the sender's other devices stay in step
                assert echo["key"] == key
                await bob.send_c2c("alice", "back")
                assert text_of(await next_of(alice, "c2c", "bob")) == "back"

                # the app's backend reaches online clients through REST
                reply = await adm.call(SEND_GROUP, {"GroupId": gid, "Random": 5,
                                                    "MsgBody": text("from the server")})
                assert reply["MsgSeq"] == 3
                for c in (alice, bob):
                    got = await next_of(c, "msg")
                    assert (got["seq"], got["from"], text_of(got)) == (
                        3, "administrator", "from the server")
                await adm.call(SENDMSG, {"From_Account": "alice", "To_Account": "bob",
                                         "MsgRandom": 9, "MsgBody": text("via REST")})
                assert text_of(await next_of(bob, "c2c", "alice")) == "via REST"

                # quit: no more messages for bob; rejoin resumes from the current seq
                await bob.quit(gid)
                await alice.send_group(gid, "bob is gone")
                await next_of(alice, "msg")
                await quiet(bob, "msg", 0.3)
                with pytest.raises(ClientError) as e:
                    await bob.send_group(gid, "still here?")
                assert e.value.code == NO_PERMISSION
                assert await bob.join(gid) == 4
                await alice.send_group(gid, "welcome back")
                got = await next_of(bob, "msg")
                assert (got["seq"], text_of(got)) == (5, "welcome back")
            finally:
                await alice.close()
                await bob.close()

    run(scenario())


# ------------------------------------------------------------------ order and resume

SENDERS, PER_SENDER = 5, 200
TOTAL = SENDERS * PER_SENDER


@dataclass
class Room:
    """A ChatRoom with SENDERS connected senders; who sent what under which seq."""

    adm: AdminClient
    gid: str
    senders: list[ChatClient]
    sent: dict[int, tuple[str, str]]

    async def send_all(self) -> None:
        async def one(c: ChatClient) -> None:
            last = 0
            for i in range(PER_SENDER):
                body = f"{c.user}#{i}"
                seq = await c.send_group(self.gid, body)
                assert seq > last  # one sender's messages keep their order
                last = seq
                self.sent[seq] = (c.user, body)

        await asyncio.gather(*(one(c) for c in self.senders))
        assert sorted(self.sent) == list(range(1, TOTAL + 1))

    def expected(self) -> list[tuple[int, str, str]]:
        return [(seq, *self.sent[seq]) for seq in range(1, TOTAL + 1)]

    async def close(self) -> None:
        for c in self.senders:
            await c.close()
        await self.adm.close()


def seen(frames: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(int(f["seq"]), str(f["from"]), text_of(f)) for f in frames]


def same_stream(got: list[tuple[int, str, str]], want: list[tuple[int, str, str]]) -> None:
    """`got` is `want` exactly; if not, say how (a diff of 1,000 tuples helps nobody)."""
    if got == want:
        return
    seqs = [g[0] for g in got]
    dupes = sorted(s for s, n in Counter(seqs).items() if n > 1)
    missing = sorted({w[0] for w in want} - set(seqs))
    back = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(seqs)) if b <= a]
    by_seq = {w[0]: w for w in want}
    wrong = [(g, by_seq.get(g[0])) for g in got if g != by_seq.get(g[0])]
    raise AssertionError(
        f"{len(got)} frames for {len(want)} messages; duplicates {dupes[:20]} "
        f"({len(dupes)}); missing {missing[:20]} ({len(missing)}); out of order at "
        f"{back[:5]} ({len(back)}); wrong content {wrong[:3]}")


async def room(base: str, app: App, readers: list[str]) -> Room:
    adm = admin(base, app)
    names = [f"sender{i}" for i in range(SENDERS)]
    await import_users(adm, names + readers)
    gid = (await adm.call(CREATE, {
        "Type": "ChatRoom", "Name": "busy",
        "MemberList": [{"Member_Account": u} for u in names + readers]}))["GroupId"]
    senders = [await chat(base, app, u) for u in names]
    return Room(adm, gid, senders, {})


def test_order_holds_for_1000_messages_from_5_senders_and_a_resume_gets_each_once(
        env: Env) -> None:
    """Five users send 200 messages each, all at once, to one ChatRoom. Everyone online
    gets the 1,000 messages as seqs 1..1000 in order (a bare socket shows that is what
    the server sent, not what a client tidied up). Two readers drop off after ~300 while
    the senders go on and come back after the stream: a bare socket resuming with `sync`
    from the last seq it saw, and the project's ChatClient with `reconnect()`; across
    their two sessions each gets every message exactly once, in order."""
    app = env.new_app()

    async def scenario() -> None:
        r = await room(env.base, app, ["reader", "raw", "resumer", "reconnecter"])
        reader = await chat(env.base, app, "reader")
        raw = await RawSocket.open(env.base, app, "raw")
        resumer = await RawSocket.open(env.base, app, "resumer")
        reconnecter = await chat(env.base, app, "reconnecter")
        again: RawSocket | None = None
        sending = asyncio.create_task(r.send_all())
        try:
            await resumer.wait_for(lambda f: f.get("op") == "msg" and f["seq"] >= 300)
            await resumer.close()
            reconnected = [await next_of(reconnecter, "msg") for _ in range(300)]
            await reconnecter.close()
            reconnected += [f for f in drain(reconnecter) if f["op"] == "msg"]
            assert not sending.done()  # they dropped mid-stream
            await sending

            got = [await next_of(reader, "msg") for _ in range(TOTAL)]
            same_stream(seen(got), r.expected())
            await raw.wait_for(lambda f: f.get("op") == "msg" and f["seq"] == TOTAL)

            before = resumer.msgs()
            again = await RawSocket.open(env.base, app, "resumer")
            ack = await again.request("sync", group=r.gid, after=before[-1]["seq"])
            assert (ack["code"], ack["seq"]) == (0, TOTAL), ack
            await reconnecter.reconnect()
            while not reconnected or reconnected[-1]["seq"] != TOTAL:
                reconnected.append(await next_of(reconnecter, "msg"))

            await asyncio.sleep(0.3)  # nothing more (no duplicate) comes after the last
            same_stream(seen(raw.msgs()), r.expected())  # exactly what the server sent
            assert [f for f in raw.frames if f["op"] not in ("login", "msg")] == []
            same_stream(seen(before + again.msgs()), r.expected())
            same_stream(seen(reconnected), r.expected())
            await quiet(reconnecter, "msg", 0)
        finally:
            sending.cancel()
            for c in (reader, reconnecter):
                await c.close()
            for s in (raw, resumer, again):
                if s is not None:
                    await s.close()
            await r.close()

    run(scenario())


async def small_room(base: str, app: App, *users: str) -> tuple[AdminClient, str]:
    """A ChatRoom of these (new) users; the admin's client and the group ID."""
    adm = admin(base, app)
    await import_users(adm, list(users))
    gid = (await adm.call(CREATE, {"Type": "ChatRoom", "Name": "room", "MemberList": [
        {"Member_Account": u} for u in users]}))["GroupId"]
    return adm, gid


async def say(adm: AdminClient, gid: str, *texts: str, elements: int = 1) -> list[int]:
    """Send each text by REST (as `elements` text elements); their MsgSeqs."""
    return [int((await adm.call(SEND_GROUP, {"GroupId": gid, "Random": 1,
                                             "MsgBody": text(t) * elements}))["MsgSeq"])
            for t in texts]




def test_resume_while_messages_keep_coming_gets_each_once_in_order(env: Env) -> None:
    """A client reconnects with its last seen seq (`since`) while a sender goes on: the
    backlog, then live messages, each once, in order — no window between login and
    resume for a live message to slip in."""
    app = env.new_app()

    async def scenario() -> None:
        adm, gid = await small_room(env.base, app, "u")
        first = await RawSocket.open(env.base, app, "u")
        second: RawSocket | None = None
        try:
            await say(adm, gid, *(f"m{i}" for i in range(1, 11)))
            await first.wait_for(lambda f: f.get("op") == "msg" and f["seq"] == 10)
            await first.close()
            await say(adm, gid, *(f"m{i}" for i in range(11, 21)))  # missed
            second = await RawSocket.open(env.base, app, "u", since={gid: 10})
            await say(adm, gid, "m21")  # a sender goes on while the client resumes
            await second.wait_for(lambda f: f.get("op") == "msg" and f["seq"] == 21)
            await asyncio.sleep(0.3)
            seqs = [f["seq"] for f in first.msgs() + second.msgs()]
            assert seqs == list(range(1, 22)), seqs
        finally:
            await first.close()
            if second is not None:
                await second.close()
            await adm.close()

    run(scenario())


def test_chat_client_reconnect_while_messages_keep_coming_loses_nothing(env: Env) -> None:
    app = env.new_app()

    async def scenario() -> None:
        adm, gid = await small_room(env.base, app, "u")
        client = await chat(env.base, app, "u")
        opened = client._open

        async def open_then_a_message_arrives(*args: Any) -> None:
            await opened(*args)
            await say(adm, gid, "m21")  # committed between the login and the sync

        try:
            await say(adm, gid, *(f"m{i}" for i in range(1, 11)))
            got = [await next_of(client, "msg") for _ in range(10)]
            await client.close()
            await say(adm, gid, *(f"m{i}" for i in range(11, 21)))
            client._open = open_then_a_message_arrives  # type: ignore[method-assign]
            await client.reconnect()
            while got[-1]["seq"] != 21:
                got.append(await next_of(client, "msg"))
            assert [f["seq"] for f in got] == list(range(1, 22))
        finally:
            await client.close()
            await adm.close()

    run(scenario())


# ------------------------------------------------------------------ slow clients

SLOW_QUEUE = 20  # IMCLOUD_WS_QUEUE: frames a client may fall behind before it is dropped
# Enough to fill what the kernel buffers on loopback before the server's writes stall
# (the send buffer grows to net.ipv4.tcp_wmem's maximum, 4 MiB by default) and then
# the session's queue: 200 messages of four 8,000-byte text elements, 6.4 MB.
BIG, ELEMENTS, FLOOD = 8000, 4, 200


async def stalled_socket(base: str, app: App, user: str) -> ClientConnection:
    """A WebSocket that reads its login frame and then nothing: a 4 KiB receive buffer
    and a one-frame client queue, so the server's writes back up at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    host, port = base.removeprefix("http://").split(":")
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await connect(ws_url(base, app.sdkappid, user, app.sig(user)), sock=sock,
                       compression=None, max_size=2**22, max_queue=1)
    assert orjson.loads(await ws.recv())["op"] == "login"
    return ws


async def read_to_the_end(ws: ClientConnection) -> list[dict[str, Any]]:
    frames = []
    with pytest.raises(ConnectionClosed):
        while True:
            frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), WAIT)))
    return frames


@pytest.fixture(scope="module", params=BACKENDS)
def slow_env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """A server that drops a client falling SLOW_QUEUE frames behind."""
    with (fresh_database(request, request.param) as url,
          serving(url, env={"IMCLOUD_WS_QUEUE": str(SLOW_QUEUE)}) as e):
        yield e


def test_a_slow_client_is_dropped_and_a_normal_one_keeps_receiving(slow_env: Env) -> None:
    """A socket that stops reading is closed with 4008 once it is SLOW_QUEUE frames
    behind; a normal member of the same group gets every message, in order."""
    e = slow_env
    app = e.new_app()

    async def scenario() -> None:
        adm, gid = await small_room(e.base, app, "normal", "slow")
        normal = await chat(e.base, app, "normal")
        slow = await stalled_socket(e.base, app, "slow")
        try:
            sent = await gather_limited(4, [
                functools.partial(say, adm, gid, "x" * BIG, elements=ELEMENTS)
                for _ in range(FLOOD)])
            assert sorted(s for (s,) in sent) == list(range(1, FLOOD + 1))
            got = [await next_of(normal, "msg") for _ in range(FLOOD)]
            assert [f["seq"] for f in got] == list(range(1, FLOOD + 1))
            assert all(len(f["body"]) == ELEMENTS for f in got)
            assert not normal.closed.is_set()

            frames = await read_to_the_end(slow)  # what was in flight, then the close
            assert slow.close_code == CLOSE_TOO_SLOW, (slow.close_code, len(frames))
            seqs = [f["seq"] for f in frames if f["op"] == "msg"]
            assert len(seqs) < FLOOD and seqs == list(range(1, len(seqs) + 1)), seqs
        finally:
            await normal.close()
            await slow.close()
            await adm.close()

    run(scenario())


def test_a_slow_client_dropped_while_it_sends_is_told_4008(slow_env: Env) -> None:
    """A client that sends but never reads: its own messages' echoes back up until it
    is dropped, in the middle of one of its own requests."""
    e = slow_env
    app = e.new_app()

    async def scenario() -> None:
        adm, gid = await small_room(e.base, app, "talker")
        talker = await stalled_socket(e.base, app, "talker")
        try:
            body = text("x" * BIG) * ELEMENTS
            with contextlib.suppress(ConnectionClosed):
                for i in range(FLOOD):
                    await talker.send(orjson.dumps({"id": i, "op": "send_group", "group": gid,
                                                    "random": i, "body": body}).decode())
            stored, still = -1, 0
            while still < 5:  # until the server has stopped taking its messages
                await asyncio.sleep(0.2)
                info = (await adm.call(INFO, {"GroupIdList": [gid]}))["GroupInfo"][0]
                still = still + 1 if info["NextMsgSeq"] - 1 == stored else 0
                stored = info["NextMsgSeq"] - 1
            assert 0 < stored < FLOOD  # it was dropped part way
            await read_to_the_end(talker)
            assert talker.close_code == CLOSE_TOO_SLOW
        finally:
            await talker.close()
            await adm.close()

    run(scenario())


def test_a_client_resumes_a_backlog_longer_than_its_queue(slow_env: Env) -> None:
    e = slow_env
    app = e.new_app()

    async def scenario() -> None:
        adm, gid = await small_room(e.base, app, "u")
        backlog = 3 * SLOW_QUEUE
        await say(adm, gid, *(f"m{i}" for i in range(1, backlog + 1)))  # u is offline
        raw = await RawSocket.open(e.base, app, "u")
        try:
            ack = await raw.request("sync", group=gid, after=0)
            assert (ack["code"], ack["seq"]) == (0, backlog)
            assert [f["seq"] for f in raw.msgs()] == list(range(1, backlog + 1))
        finally:
            await raw.close()
            await adm.close()

    run(scenario())


# ------------------------------------------------------------------ content filtering

BLOCKED = ["what a Bastard", "I love DURIAN pie"]  # a built-in word; the app's own word


def test_content_filtering_refuses_the_same_messages_through_the_gateway_and_rest(
        env: Env) -> None:
    """E4: with the item on, a text with a built-in or an app word is refused (80001)
    over WebSocket exactly as over REST, and is neither stored nor delivered."""
    app = env.new_app("pro", "--content-filtering")
    env.imcloud("filter", "add", str(app.sdkappid), "durian")
    trial = env.new_app()  # the item off: the same words pass

    async def scenario() -> None:
        adm, gid = await small_room(env.base, app, "alice", "bob")
        alice, bob = await chat(env.base, app, "alice"), await chat(env.base, app, "bob")
        try:
            for t in BLOCKED:
                for body in (t, [*text("fine"), *text(t)]):  # any text element
                    with pytest.raises(ClientError) as e:
                        await alice.send_group(gid, body)
                    assert e.value.code == CONTENT_BLOCKED
                    with pytest.raises(ClientError) as e:
                        await alice.send_c2c("bob", body)
                    assert e.value.code == CONTENT_BLOCKED
                    msg_body = text(body) if isinstance(body, str) else body
                    with pytest.raises(ClientError) as e:
                        await adm.call(SEND_GROUP, {"GroupId": gid, "From_Account": "alice",
                                                    "Random": 1, "MsgBody": msg_body})
                    assert e.value.code == CONTENT_BLOCKED
                    with pytest.raises(ClientError) as e:
                        await adm.call(SENDMSG, {"From_Account": "alice", "To_Account": "bob",
                                                 "MsgRandom": 1, "MsgBody": msg_body})
                    assert e.value.code == CONTENT_BLOCKED

            # nothing was stored: the next message takes seq 1; nothing was delivered
            assert await alice.send_group(gid, "a clean message") == 1
            key = await alice.send_c2c("bob", "clean, one to one")
            got = await next_of(bob, "msg")
            assert (got["seq"], text_of(got)) == (1, "a clean message")
            assert (await next_of(bob, "c2c"))["key"] == key
            await quiet(bob, "msg", 0.2)
            await quiet(bob, "c2c", 0)
            history = await adm.call(GROUP_HISTORY, {"GroupId": gid, "ReqMsgNumber": 20})
            assert [m["MsgSeq"] for m in history["RspMsgList"]] == [1]
            roam = await adm.call(ROAM, {"Operator_Account": "alice", "Peer_Account": "bob",
                                         "MaxCnt": 100, "MinTime": 0,
                                         "MaxTime": 4_294_967_295})
            assert [m["MsgKey"] for m in roam["MsgList"]] == [key]
        finally:
            await alice.close()
            await bob.close()
            await adm.close()

        adm, gid = await small_room(env.base, trial, "carol")
        carol = await chat(env.base, trial, "carol")
        try:
            assert await carol.send_group(gid, BLOCKED[0]) == 1
        finally:
            await carol.close()
            await adm.close()

    run(scenario())


# ------------------------------------------------------------------ DAU (§6)


def usage_days(env: Env, app: App, *days: date) -> dict[date, int]:
    """DAU per day, from `imcloud usage show` (0 for a day without a row)."""
    out = {d: 0 for d in days}
    for month in sorted({d.strftime("%Y-%m") for d in days}):
        shown = env.imcloud("usage", "show", str(app.sdkappid), "--month", month)
        for row in shown["days"]:
            day = date.fromisoformat(row["date"])
            if day in out:
                out[day] = row["dau"]
    return out


def today(env: Env) -> date:
    return datetime.fromisoformat(env.imcloud("clock", "show")["now"]).date()


def test_dau_counts_an_open_session_on_every_day_and_never_a_rest_call(env: Env) -> None:
    """A user with a session open across midnight is active on both days; users that
    only appear in REST calls are never counted."""
    app = env.new_app()
    day = today(env)
    env.imcloud("clock", "set", f"{day}T23:59:00")
    next_day = day + timedelta(days=1)

    async def scenario() -> None:
        adm, gid = await small_room(env.base, app, "alice", "bob", "carol")

        async def backend_traffic() -> None:  # REST calls naming users
            await adm.call(SEND_GROUP, {"GroupId": gid, "From_Account": "bob", "Random": 1,
                                        "MsgBody": text("from bob, by REST")})
            await adm.call(SENDMSG, {"From_Account": "carol", "To_Account": "bob",
                                     "MsgRandom": 1, "MsgBody": text("by REST")})
            await adm.call(INFO, {"GroupIdList": [gid]})

        try:
            await backend_traffic()
            assert await asyncio.to_thread(usage_days, env, app, day) == {day: 0}
            alice = await chat(env.base, app, "alice")
            try:
                assert await asyncio.to_thread(usage_days, env, app, day) == {day: 1}
                await backend_traffic()
                await alice.send_group(gid, "alice is here")
                assert await asyncio.to_thread(usage_days, env, app, day, next_day) == {
                    day: 1, next_day: 0}

                await asyncio.to_thread(env.imcloud, "clock", "set", f"{next_day}T00:00:30")
                deadline = time.monotonic() + 5  # the servers look at the clock every 0.25 s
                while (await asyncio.to_thread(usage_days, env, app, next_day))[next_day] != 1:
                    assert time.monotonic() < deadline, "the new day did not count alice"
                    await asyncio.sleep(0.25)
                await backend_traffic()
                assert await asyncio.to_thread(usage_days, env, app, day, next_day) == {
                    day: 1, next_day: 1}
            finally:
                await alice.close()
        finally:
            await adm.close()

    run(scenario())


def test_the_101st_user_of_a_trial_app_s_day_gets_72000(env: Env) -> None:
    """Trial allows 100 accounts, so the 101st user of the day is a new account made
    after one of the first hundred was deleted."""
    app = env.new_app()
    users = [f"u{i:03}" for i in range(100)]

    async def connect_and_leave(user: str) -> None:
        client = await chat(env.base, app, user)
        await client.close()

    async def scenario() -> None:
        async with admin(env.base, app) as adm:
            await import_users(adm, users)
            await gather_limited(10, [functools.partial(connect_and_leave, u) for u in users])
            day = await asyncio.to_thread(today, env)
            assert await asyncio.to_thread(usage_days, env, app, day) == {day: 100}

            gone = await chat(env.base, app, users[0])
            await adm.call(DELETE, {"DeleteItem": [{"UserID": users[0]}]})
            await closes(gone)
            assert gone.close_code == CLOSE_GONE  # a deleted account's session ends
            await import_users(adm, ["newcomer"])
            raw = await RawSocket.at(ws_url(env.base, app.sdkappid, "newcomer",
                                            app.sig("newcomer")))
            assert await raw.refused() == (TRIAL_DAU_LIMIT, CLOSE_REFUSED)
            with pytest.raises(ClientError) as e:
                await chat(env.base, app, "newcomer")
            assert e.value.code == TRIAL_DAU_LIMIT

            again = await chat(env.base, app, users[1])  # counted today: still welcome
            await again.close()
            assert await asyncio.to_thread(usage_days, env, app, day) == {day: 100}

    run(scenario())


# ------------------------------------------------------------------ R6, login


def test_disabling_an_app_closes_its_sockets_and_refuses_new_logins(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """R6 on one node: the CLI disables the app in the shared database (no broker: the
    node notices by polling) and every session of the app is closed with 4003."""
    monkeypatch.delenv("IMCLOUD_BROKER_URL", raising=False)
    app = env.new_app()
    other = env.new_app()

    async def scenario() -> None:
        adm, gid = await small_room(env.base, app, "a", "b", "c")
        oadm, ogid = await small_room(env.base, other, "a")
        clients = [await chat(env.base, app, u) for u in ("a", "b", "c")]
        bystander = await chat(env.base, other, "a")
        try:
            await asyncio.to_thread(env.imcloud, "app", "disable", str(app.sdkappid),
                                    "--confirm", app.name)
            done = time.monotonic()
            closed = await asyncio.gather(*(closes(c) for c in clients))
            assert [c.close_code for c in clients] == [CLOSE_DISABLED] * 3
            assert max(closed) - done < 5

            raw = await RawSocket.at(ws_url(env.base, app.sdkappid, "a", app.sig("a")))
            assert await raw.refused() == (APP_DISABLED, CLOSE_DISABLED)
            with pytest.raises(ClientError) as e:
                await chat(env.base, app, "b")
            assert e.value.code == APP_DISABLED
            with pytest.raises(ClientError) as e:
                await adm.call(INFO, {"GroupIdList": [gid]})
            assert e.value.code == APP_DISABLED

            assert not bystander.closed.is_set()  # another app's session is untouched
            assert await bystander.send_group(ogid, "still here") == 1
        finally:
            await bystander.close()
            await adm.close()
            await oadm.close()

    run(scenario())


def test_a_refused_login_gets_an_error_frame_and_is_closed(env: Env) -> None:
    app = env.new_app()

    async def scenario() -> None:
        async with admin(env.base, app) as adm:
            await import_users(adm, ["alice", "bob"])
            forged = user_sig(app.sdkappid, "0" * 64, "alice")
            cases = {
                ws_url(env.base, app.sdkappid, "alice", forged): BAD_SIGNATURE,
                ws_url(env.base, app.sdkappid, "alice", "not-a-usersig"): MALFORMED_SIG,
                ws_url(env.base, app.sdkappid, "alice", app.sig("bob")): IDENTIFIER_MISMATCH,
                ws_url(env.base, app.sdkappid, "nobody", app.sig("nobody")): ACCOUNT_NOT_FOUND,
                ws_url(env.base, 1400000001, "alice", app.sig("alice")): INVALID_SDKAPPID,
                ws_url(env.base, "", "alice", app.sig("alice")): MISSING_SDKAPPID,
            }
            for url, code in cases.items():
                raw = await RawSocket.at(url)
                assert await raw.refused() == (code, CLOSE_REFUSED), url
            with pytest.raises(ClientError) as e:
                await ChatClient.connect(env.base, app.sdkappid, "alice", forged)
            assert e.value.code == BAD_SIGNATURE

            # a session's refused requests are acks with the code; the session goes on
            gid = (await adm.call(CREATE, {"Type": "Private", "Name": "p"}))["GroupId"]
            raw = await RawSocket.open(env.base, app, "alice")
            try:
                assert (await raw.request("nope"))["code"] == 10003
                assert (await raw.request("join", group=gid))["code"] == NO_PERMISSION
                assert (await raw.request("join", group="@TGS#none"))["code"] == 10010
                assert (await raw.request("send_group", group=gid, body=text("x")))[
                    "code"] == NO_PERMISSION
                assert (await raw.request("send_c2c", to="bob", body=[]))["code"] == 10004
                assert (await raw.request("send_c2c", to="bob", body=text("hi")))["code"] == 0
            finally:
                await raw.close()

    run(scenario())
