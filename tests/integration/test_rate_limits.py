"""Frequency limits (SPEC §7) through real `imcloud serve` processes: 60007 (REST calls
per app per second), 10023 (messages per group per second, REST and WebSocket alike),
10006 (net new groups per day), each limit off at 0.

Rates are shared by two nodes through the test Redis (IMCLOUD_BROKER_URL, which the
limiter follows), on PostgreSQL and on SQLite (where a write call is admitted before
its write transaction); single nodes limit in-process. A blast runs clients on both
nodes for BLAST seconds, far faster than the limit, and keeps every call's send and
answer times (`Shot`): the calls admitted while provably inside one second (sent after
its start, answered before its end) must be at most the limit, and the calls admitted
over the whole blast close to limit × seconds. Servers of other test modules run with
the limits off (tests/v4client.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis

from imcloud.client import ChatClient, ClientError, user_sig
from imcloud.ratelimit import RedisLimiter
from imcloud.settings import Settings
from imcloud.store.db import Database
from imcloud.store.tables import im_accounts, im_app_counters
from tests.conftest import run
from tests.integration.test_realtime import (
    BACKENDS,
    CREATE,
    GROUP,
    INFO,
    LOGIN,
    MULTI_IMPORT,
    SEND_GROUP,
    START,
    App,
    Env,
    chat,
    fresh_database,
    serving,
    text,
)
from tests.integration.test_serve import free_port
from tests.v4client import Node

# The blasts' limits are below the defaults (200 calls, 40 messages a second), so that
# clients on a loaded 2-core test machine still send well past them; same code path.
REST_LIMIT = 20  # 60007
GROUP_LIMIT = 20  # 10023
NET_NEW_CAP = 5  # 10006: small, so a test reaches it
BLAST = 2.5  # seconds

IMPORT = f"{LOGIN}/account_import"
CHECK = f"{LOGIN}/account_check"
DESTROY = f"{GROUP}/destroy_group"
APP_GROUPS = f"{GROUP}/get_appid_group_list"
OK, FREQUENCY, REST_FREQUENCY, MESSAGE_FREQUENCY = 0, 10006, 60007, 10023
UNKNOWN_COMMAND, INVALID_PARAMETER, NOT_ADMIN, BAD_SIGNATURE = 10003, 10004, 60010, 70009
NO_PERMISSION = 10007
CHECK_ONE = {"CheckItem": [{"UserID": "nobody"}]}


# ------------------------------------------------------------------ helpers


@dataclass
class Shot:
    sent: float
    done: float
    code: int
    via: str  # "rest" | "ws", and the node
    what: str = ""


def codes_of(shots: list[Shot]) -> dict[int, int]:
    return dict(Counter(s.code for s in shots))


def densest(shots: list[Shot], span: float = 1.0) -> int:
    """The most admitted calls provably admitted within one `span`: sent at or after its
    start, answered by its end (the limiter decided in between)."""
    ok = sorted((s for s in shots if s.code == OK), key=lambda s: s.sent)
    return max(
        (sum(1 for s in ok[i:] if s.done <= first.sent + span) for i, first in enumerate(ok)),
        default=0,
    )


def duration(shots: list[Shot]) -> float:
    return max(s.done for s in shots) - min(s.sent for s in shots)


def admitted(shots: list[Shot]) -> list[Shot]:
    return [s for s in shots if s.code == OK]


async def hammer(
    workers: list[tuple[str, Callable[[], Awaitable[tuple[int, str]]]]], seconds: float
) -> list[Shot]:
    """Every worker calls as fast as it is answered until `seconds` pass."""
    shots: list[Shot] = []
    deadline = time.monotonic() + seconds

    async def loop(via: str, call: Callable[[], Awaitable[tuple[int, str]]]) -> None:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            code, what = await call()
            shots.append(Shot(sent, time.monotonic(), code, via, what))

    await asyncio.gather(*(loop(via, call) for via, call in workers))
    return shots


async def paced(call: Callable[[], Awaitable[int]], per_second: float, seconds: float) -> list[int]:
    """A well-behaved client: `per_second` calls, evenly spaced."""
    codes = []
    for _ in range(int(per_second * seconds)):
        codes.append(await call())
        await asyncio.sleep(1 / per_second)
    return codes


class Rest:
    """v4 calls as the app's admin (or another identifier) that return the ErrorCode."""

    def __init__(
        self,
        base: str,
        app: App,
        http: httpx.AsyncClient,
        identifier: str = "administrator",
        sig: str | None = None,
    ):
        self.base, self.app, self.http = base, app, http
        self.query = urlencode(
            {
                "sdkappid": app.sdkappid,
                "identifier": identifier,
                "usersig": sig if sig is not None else app.sig(identifier),
                "random": 1,
                "contenttype": "json",
            }
        )

    async def __call__(self, path: str, body: Any = None) -> dict[str, Any]:
        r = await self.http.post(f"{self.base}/v4/{path}?{self.query}", json=body or {})
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        assert {"ActionStatus", "ErrorCode", "ErrorInfo"} <= set(data), data
        assert (data["ActionStatus"] == "OK") == (data["ErrorCode"] == 0), data
        return data

    async def code(self, path: str, body: Any = None) -> int:
        return int((await self(path, body))["ErrorCode"])

    async def ok(self, path: str, body: Any = None) -> dict[str, Any]:
        data = await self(path, body)
        assert data["ErrorCode"] == 0, data
        return data


async def gather_codes(*calls: Awaitable[int]) -> list[int]:
    return sorted(await asyncio.gather(*calls))


async def next_seq(rest: Rest, group: str) -> int:
    info = (await rest.ok(INFO, {"GroupIdList": [group]}))["GroupInfo"][0]
    return int(info["NextMsgSeq"])


async def db_rows(db_url: str, query: sa.Select[Any]) -> list[Any]:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            return list(await conn.execute(query))
    finally:
        await db.dispose()


def limits(rest: int, messages: int, net_new: int | None = None) -> dict[str, str]:
    env = {
        "IMCLOUD_REST_CALLS_PER_SECOND": str(rest),
        "IMCLOUD_GROUP_MESSAGES_PER_SECOND": str(messages),
    }
    if net_new is not None:
        env["IMCLOUD_NET_NEW_GROUPS_PER_DAY"] = str(net_new)
    return env


# ------------------------------------------------------------------ servers


@pytest.fixture(scope="module", params=BACKENDS)
def rest_cluster(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Env]:
    """Two nodes sharing a database and Redis, REST_LIMIT calls per second per app."""
    with (
        fresh_database(request, request.param) as url,
        serving(url, nodes=2, env={"IMCLOUD_BROKER_URL": redis_url, **limits(REST_LIMIT, 0)}) as e,
    ):
        yield e


@pytest.fixture(scope="module", params=BACKENDS)
def message_cluster(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Env]:
    """Two nodes sharing a database and Redis: GROUP_LIMIT messages per second per group,
    NET_NEW_CAP net new groups per day, no REST limit."""
    env = {"IMCLOUD_BROKER_URL": redis_url, **limits(0, GROUP_LIMIT, NET_NEW_CAP)}
    with fresh_database(request, request.param) as url, serving(url, nodes=2, env=env) as e:
        yield e


@pytest.fixture(scope="module")
def single(request: pytest.FixtureRequest) -> Iterator[str]:
    """A SQLite database for single nodes (in-process limiter), each with its own limits."""
    with fresh_database(request, "sqlite") as url:
        yield url


# ------------------------------------------------------------------ 60007


def test_60007_rest_rate_limit_shared_by_two_nodes(rest_cluster: Env) -> None:
    """Reads and writes of one app on two nodes: at most REST_LIMIT admitted in any
    second, about REST_LIMIT × seconds in all, the rest 60007 — and a refused write
    changed nothing. Another app, calling politely meanwhile, is never refused."""
    env = rest_cluster
    app, other = env.new_app("pro"), env.new_app()
    serial = itertools.count()

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            rests = [Rest(n.base, app, http) for n in env.nodes]
            gid = (await rests[0].ok(CREATE, {"Type": "Public", "Name": "g"}))["GroupId"]
            await asyncio.sleep(1.1)  # set-up calls leave the window

            def reader(rest: Rest) -> Callable[[], Awaitable[tuple[int, str]]]:
                async def call() -> tuple[int, str]:
                    return await rest.code(INFO, {"GroupIdList": [gid]}), ""

                return call

            def writer(rest: Rest) -> Callable[[], Awaitable[tuple[int, str]]]:
                async def call() -> tuple[int, str]:
                    user = f"u{next(serial)}"
                    return await rest.code(IMPORT, {"UserID": user}), user

                return call

            workers = [
                (f"node{i}", make(rest))
                for i, rest in enumerate(rests)
                for make in (reader, writer, reader, writer)
            ]
            others = [Rest(n.base, other, http) for n in env.nodes]

            async def polite() -> int:  # a third of the limit, alternating nodes
                return await others[next(serial) % 2].code(CHECK, CHECK_ONE)

            shots, polite_codes = await asyncio.gather(
                hammer(workers, BLAST), paced(polite, REST_LIMIT / 3, BLAST)
            )

        assert {s.code for s in shots} == {OK, REST_FREQUENCY}, codes_of(shots)
        for node in ("node0", "node1"):
            assert {s.code for s in shots if s.via == node} == {OK, REST_FREQUENCY}
        ok, seconds = admitted(shots), duration(shots)
        assert densest(shots) <= REST_LIMIT, densest(shots)
        assert len(ok) >= 0.9 * REST_LIMIT * int(seconds), (len(ok), seconds)
        assert len(ok) <= REST_LIMIT * (int(seconds) + 1), (len(ok), seconds)
        assert set(polite_codes) == {OK}  # its own budget

        imported = {s.what for s in ok if s.what}
        tried = {s.what for s in shots if s.what}
        assert imported and tried - imported
        rows = await db_rows(
            env.db_url,
            sa.select(im_accounts.c.user_id).where(im_accounts.c.sdkappid == app.sdkappid),
        )
        assert {r.user_id for r in rows} == imported  # refused imports left no account

    run(scenario())


def test_60007_counts_authenticated_calls_only(single: str) -> None:
    """After authentication, before the command: junk (bad UserSig, not the admin) never
    spends an app's budget; every authenticated call does, unknown or malformed ones
    too. In-process limiter (one node)."""
    limit = 5
    with serving(single, env=limits(limit, 0)) as env:
        app = env.new_app()

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                admin = Rest(env.base, app, http)
                junk = [
                    Rest(
                        env.base, app, http, sig=user_sig(app.sdkappid, "0" * 64, "administrator")
                    ),
                    Rest(env.base, app, http, identifier="bob"),
                ]
                await admin.ok(MULTI_IMPORT, {"Accounts": ["bob"]})
                await asyncio.sleep(1.1)
                codes = await gather_codes(*(junk[i % 2].code(CHECK, CHECK_ONE) for i in range(40)))
                assert codes == [NOT_ADMIN] * 20 + [BAD_SIGNATURE] * 20
                codes = await gather_codes(
                    *(admin.code(CHECK, CHECK_ONE) for _ in range(limit + 3))
                )
                assert codes == [OK] * limit + [REST_FREQUENCY] * 3

                await asyncio.sleep(1.1)
                codes = await gather_codes(
                    *(admin.code(f"{LOGIN}/no_such_command") for _ in range(limit - 1)),
                    admin.code(IMPORT, {}),
                )
                assert codes == [UNKNOWN_COMMAND] * (limit - 1) + [INVALID_PARAMETER]
                assert await admin.code(CHECK, CHECK_ONE) == REST_FREQUENCY
                assert await admin.code(IMPORT, {"UserID": "carol"}) == REST_FREQUENCY
                await asyncio.sleep(1.1)
                reply = await admin.ok(CHECK, {"CheckItem": [{"UserID": "carol"}]})
                assert reply["ResultItem"][0]["AccountStatus"] == "NotImported"

        run(scenario())


# ------------------------------------------------------------------ 10023


def test_10023_group_message_rate_shared_by_two_nodes_rest_and_websocket_mixed(
    message_cluster: Env,
) -> None:
    """Members on WebSockets and the backend over REST send into one group through both
    nodes: at most GROUP_LIMIT stored in any second, about that × seconds in all, 10023 on
    both paths, and a refused message takes no MsgSeq. A second group of the same app,
    sent to politely meanwhile, is never refused."""
    env = message_cluster
    app = env.new_app()
    senders = [f"w{i}" for i in range(4)]

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            rests = [Rest(n.base, app, http) for n in env.nodes]
            await rests[0].ok(MULTI_IMPORT, {"Accounts": senders})
            members = [{"Member_Account": u} for u in senders]
            busy, calm = [
                (
                    await rests[0].ok(
                        CREATE, {"Type": "Public", "Name": name, "MemberList": members}
                    )
                )["GroupId"]
                for name in ("busy", "calm")
            ]
            clients = [await chat(env.nodes[i % 2].base, app, u) for i, u in enumerate(senders)]
            try:

                def ws(client: ChatClient) -> Callable[[], Awaitable[tuple[int, str]]]:
                    async def call() -> tuple[int, str]:
                        try:
                            await client.send_group(busy, "hi")
                            return OK, ""
                        except ClientError as e:
                            return e.code, ""

                    return call

                def rest(r: Rest, sender: str) -> Callable[[], Awaitable[tuple[int, str]]]:
                    async def call() -> tuple[int, str]:
                        return await r.code(
                            SEND_GROUP,
                            {
                                "GroupId": busy,
                                "Random": 1,
                                "From_Account": sender,
                                "MsgBody": text("hi"),
                            },
                        ), ""

                    return call

                workers = [(f"ws{i % 2}", ws(c)) for i, c in enumerate(clients)]
                workers += [(f"rest{i % 2}", rest(rests[i % 2], senders[i])) for i in range(4)]
                serial = itertools.count()

                async def polite() -> int:
                    return await rests[next(serial) % 2].code(
                        SEND_GROUP, {"GroupId": calm, "Random": 2, "MsgBody": text("calm")}
                    )

                shots, polite_codes = await asyncio.gather(
                    hammer(workers, BLAST), paced(polite, GROUP_LIMIT / 4, BLAST)
                )
            finally:
                for c in clients:
                    await c.close()

            assert {s.code for s in shots} == {OK, MESSAGE_FREQUENCY}, codes_of(shots)
            for via in ("ws0", "ws1", "rest0", "rest1"):
                assert {s.code for s in shots if s.via == via} == {OK, MESSAGE_FREQUENCY}, via
            ok, seconds = admitted(shots), duration(shots)
            assert densest(shots) <= GROUP_LIMIT, densest(shots)
            assert len(ok) >= 0.9 * GROUP_LIMIT * int(seconds), (len(ok), seconds)
            assert len(ok) <= GROUP_LIMIT * (int(seconds) + 1), (len(ok), seconds)
            assert set(polite_codes) == {OK}
            assert await next_seq(rests[1], busy) == len(ok) + 1  # refused: no MsgSeq
            assert await next_seq(rests[0], calm) == len(polite_codes) + 1

    run(scenario())


def test_10023_refused_messages_spend_nothing(single: str) -> None:
    """A message another rule refuses (10007) gives its place back; in-process limiter."""
    limit = 3
    with serving(single, env=limits(0, limit)) as env:
        app = env.new_app()

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                admin = Rest(env.base, app, http)
                await admin.ok(MULTI_IMPORT, {"Accounts": ["member", "stranger"]})
                gid = (
                    await admin.ok(
                        CREATE,
                        {
                            "Type": "Public",
                            "Name": "g",
                            "MemberList": [{"Member_Account": "member"}],
                        },
                    )
                )["GroupId"]

                def send(sender: str) -> Awaitable[int]:
                    return admin.code(
                        SEND_GROUP,
                        {
                            "GroupId": gid,
                            "From_Account": sender,
                            "Random": 1,
                            "MsgBody": text("hi"),
                        },
                    )

                assert (
                    await gather_codes(*(send("stranger") for _ in range(10)))
                    == [NO_PERMISSION] * 10
                )
                assert (
                    await gather_codes(*(send("member") for _ in range(limit + 2)))
                    == [OK] * limit + [MESSAGE_FREQUENCY] * 2
                )
                assert await next_seq(admin, gid) == limit + 1

                await asyncio.sleep(1.1)
                client = await chat(env.base, app, "member")
                try:

                    async def ws_send() -> int:
                        try:
                            await client.send_group(gid, "hi")
                            return OK
                        except ClientError as e:
                            return e.code

                    assert (
                        await gather_codes(*(ws_send() for _ in range(limit + 2)))
                        == [OK] * limit + [MESSAGE_FREQUENCY] * 2
                    )
                finally:
                    await client.close()
                assert await next_seq(admin, gid) == 2 * limit + 1

        run(scenario())


# ------------------------------------------------------------------ 10006


def test_10006_net_new_groups_cap_from_setting_on_two_nodes_survives_restart(
    message_cluster: Env,
) -> None:
    """IMCLOUD_NET_NEW_GROUPS_PER_DAY: concurrent creations over two nodes admit exactly
    the cap; a destroyed group makes room for one; the count is in the database (a
    restarted node still refuses) and per app and day."""
    env = message_cluster
    app, other = env.new_app(), env.new_app()

    async def scenario(base_urls: list[str], app: App, creations: int) -> list[int]:
        async with httpx.AsyncClient(timeout=30) as http:
            rests = [Rest(b, app, http) for b in base_urls]
            return await gather_codes(
                *(
                    rests[i % len(rests)].code(CREATE, {"Type": "Public", "Name": f"g{i}"})
                    for i in range(creations)
                )
            )

    bases = [n.base for n in env.nodes]
    assert run(scenario(bases, app, 12)) == [OK] * NET_NEW_CAP + [FREQUENCY] * 7

    async def one_more() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            rest = Rest(bases[1], app, http)
            listed = await rest.ok(APP_GROUPS, {})
            assert listed["TotalCount"] == NET_NEW_CAP  # refused creations left nothing
            await rest.ok(DESTROY, {"GroupId": listed["GroupIdList"][0]["GroupId"]})
            await rest.ok(CREATE, {"Type": "Public", "Name": "room"})
            assert await rest.code(CREATE, {"Type": "Public", "Name": "full"}) == FREQUENCY

    run(one_more())
    assert run(scenario(bases, other, NET_NEW_CAP)) == [OK] * NET_NEW_CAP  # its own count

    restarted = Node(
        env.db_url, {"IMCLOUD_BILL_CHECK_SECONDS": "86400", **limits(0, 0, NET_NEW_CAP)}
    )
    try:
        assert run(scenario([restarted.base], app, 1)) == [FREQUENCY]
    finally:
        restarted.stop()
    assert not restarted.problems()

    day = date.fromisoformat(START[:10])
    env.imcloud("clock", "set", f"{day + timedelta(days=1)}T00:00:01")
    assert run(scenario(bases, app, 1)) == [OK]  # a new day


# ------------------------------------------------------------------ 0 = off


def test_limits_off_when_set_to_zero(single: str, redis_url: str) -> None:
    """0 turns each limit off: a burst of messages the default would cut (more than 40 to
    one group within a second) all pass, nothing is ever counted in the shared limiter
    (this machine cannot send 200 calls a second to show it by timing), and a day past
    10,000 net new groups still creates."""
    env_vars = {"IMCLOUD_RATE_LIMIT_URL": redis_url, **limits(0, 0, 0)}
    with serving(single, env=env_vars) as env:
        app = env.new_app()

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                admin = Rest(env.base, app, http)
                await admin.ok(MULTI_IMPORT, {"Accounts": ["a", "b"]})
                gid = (
                    await admin.ok(
                        CREATE,
                        {
                            "Type": "Public",
                            "Name": "g",
                            "MemberList": [{"Member_Account": "a"}, {"Member_Account": "b"}],
                        },
                    )
                )["GroupId"]
                clients = [await chat(env.base, app, u) for u in ("a", "b")]
                try:

                    def ws(client: ChatClient) -> Callable[[], Awaitable[tuple[int, str]]]:
                        async def call() -> tuple[int, str]:
                            await client.send_group(gid, "hi")
                            return OK, ""

                        return call

                    async def rest() -> tuple[int, str]:
                        return await admin.code(
                            SEND_GROUP, {"GroupId": gid, "Random": 1, "MsgBody": text("hi")}
                        ), ""

                    shots = await hammer([("ws", ws(c)) for c in clients] + [("rest", rest)] * 2, 2)
                finally:
                    for c in clients:
                        await c.close()
                assert {s.code for s in shots} == {OK}
                assert densest(shots) > Settings().group_messages_per_second, densest(shots)
                assert await next_seq(admin, gid) == len(shots) + 1
                assert {s.via for s in shots} == {"ws", "rest"}

            redis = Redis.from_url(redis_url)
            try:
                assert await redis.keys(f"imcloud:rate:*{app.sdkappid}*") == []
            finally:
                await redis.aclose()

        run(scenario())

        async def day_full() -> None:  # 10,000 net new groups today: too many to create
            db = Database(single)
            try:
                async with db.write() as conn:
                    c = im_app_counters.c
                    await conn.execute(
                        sa.update(im_app_counters)
                        .where(c.sdkappid == app.sdkappid)
                        .values(day=date.fromisoformat(START[:10]), net_new_groups=10_000)
                    )
            finally:
                await db.dispose()

        run(day_full())
        reply = run(_create(env.base, app))
        assert reply["ErrorCode"] == OK, reply


async def _create(base: str, app: App) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        return await Rest(base, app, http)(CREATE, {"Type": "Public", "Name": "one more"})


# ------------------------------------------------------------------ the Redis limiter


def test_redis_limiter_two_nodes_share_one_window(redis_url: str) -> None:
    """Two limiters (two nodes) on one key: concurrent takes admit exactly the limit;
    a place given back is free again; the window slides on Redis's clock."""
    key = f"test:{uuid.uuid4().hex}"

    async def scenario() -> None:
        a, b = RedisLimiter(redis_url), RedisLimiter(redis_url)
        try:
            tickets = await asyncio.gather(*((a, b)[i % 2].take(key, 10) for i in range(30)))
            taken = [t for t in tickets if t is not None]
            assert len(taken) == 10
            assert await a.take(key, 10) is None
            await b.give_back(taken[0])  # taken by a, given back through b: one window
            assert await a.take(key, 10) is not None
            assert await b.take(key, 10) is None
            await asyncio.sleep(1.05)
            assert await b.take(key, 10) is not None
            assert 0 < await a.redis.pttl(f"imcloud:rate:{key}") <= 1000  # it expires
        finally:
            await a.close()
            await b.close()

    run(scenario())


def test_redis_limiter_unreachable_limits_per_node(caplog: pytest.LogCaptureFixture) -> None:
    """Without Redis a node keeps limiting on its own (and says so) rather than stopping
    the app's traffic or letting it all through."""
    dead = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0")

    async def scenario() -> None:
        try:
            with caplog.at_level(logging.WARNING, "imcloud.ratelimit"):
                verdicts = [await dead.take("k", 3) is not None for _ in range(5)]
            assert verdicts == [True] * 3 + [False] * 2
            assert "per node" in caplog.text
        finally:
            await dead.close()

    run(scenario())
