"""Limits under concurrency and across plan changes, through the real v4 API (SPEC §2, R5,
E1–E3), on SQLite and on PostgreSQL.

The races run against two `imcloud serve` processes sharing one database (one pair per
backend, each race in its own app), requests alternating between them, all in flight at
once: one process with one connection would serialise everything and prove nothing.
Their sizes come from IMCLOUD_TEST_RACE_SCALE (default 1.0: 300 joins for 200 places,
80 AVChatRooms for 50, 80 joins of one user for 50 groups); CI runs the defaults.

Below HTTP: an E1 check drives groups.add_members from many engines at once, and
lock-order checks interleave two transactions deterministically (a third one holds a
row) to show that changes taking the same rows never deadlock on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import catalog as catalog_mod
from imcloud.errors import Refused
from imcloud.services import groups, im_accounts, tenant
from imcloud.store.db import Database
from imcloud.store.tables import im_accounts as accounts_table
from imcloud.store.tables import im_groups, im_members
from tests.conftest import (
    Cli,
    _pg_url_for,
    drop_postgres_db,
    need_postgres,
    new_postgres_db,
    run,
)
from tests.v4client import V4, Node

RACE_SCALE = float(os.environ.get("IMCLOUD_TEST_RACE_SCALE", "1.0"))
CATALOG = catalog_mod.load()
UTC = ZoneInfo("UTC")
T = TypeVar("T")

LOGIN = "im_open_login_svc"
GROUP = "group_open_http_svc"
IMPORT = f"{LOGIN}/multiaccount_import"
CREATE = f"{GROUP}/create_group"
DESTROY = f"{GROUP}/destroy_group"
ADD = f"{GROUP}/add_group_member"
INFO = f"{GROUP}/get_group_info"
MEMBERS = f"{GROUP}/get_group_member_info"
JOINED = f"{GROUP}/get_joined_group_list"
APP_GROUPS = f"{GROUP}/get_appid_group_list"
MODIFY = f"{GROUP}/modify_group_base_info"

GROUP_FULL, AV_ROOM_LIMIT, GROUPS_PER_USER, MEMBER_LIMIT = 10014, 10036, 10037, 10038
INVALID_PARAMETER, ACCOUNT_NOT_FOUND = 10004, 10019


def scaled(n: int) -> int:
    return max(2, round(n * RACE_SCALE))


# ------------------------------------------------------------------ set-up helpers


def make_app(imcloud: Cli, edition: str | None = None) -> dict[str, Any]:
    """A new app on Trial, or upgraded to `edition` (on the database's clock)."""
    app: dict[str, Any] = imcloud("app", "create", "limits")
    if edition is not None:
        shown = imcloud("app", "upgrade", str(app["sdkappid"]), "--edition", edition)
        assert shown["service_version"].lower() == edition
    return app


def new_app(db_url: str, edition: str | None = None) -> tuple[Cli, dict[str, Any]]:
    """A database with a simulated clock at 2019-02-01 and one app (Trial, or upgraded)."""
    imcloud = Cli(db_url)
    imcloud("init", "--simulated-clock", "2019-02-01")
    return imcloud, make_app(imcloud, edition)


@contextmanager
def cluster(db_url: str, n: int = 2) -> Iterator[list[Node]]:
    """n servers on one database, started side by side; always stopped; none may log an
    error."""
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(Node, db_url) for _ in range(n)]
    started = [f.result() for f in futures if f.exception() is None]
    try:
        for f in futures:
            f.result()  # re-raise a server that did not come up
        yield started
    finally:
        for node in started:
            node.stop()
    problems = [p for node in started for p in node.problems()]
    assert not problems, "".join(problems[:40])


@dataclass
class Shared:
    """Two servers on one database, shared by the race tests of one backend; each test
    makes its own app (tenant) in it."""

    imcloud: Cli
    nodes: list[Node]

    @contextmanager
    def clean(self) -> Iterator[None]:
        """Whatever the test does must not make a server log an error."""
        marks = [len(n.lines) for n in self.nodes]
        yield
        problems = [p for n, m in zip(self.nodes, marks, strict=True) for p in n.problems(m)]
        assert not problems, "".join(problems[:40])


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Shared]:
    pg_name = None
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("limits") / "imcloud.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        pg_name = new_postgres_db(request.getfixturevalue("postgres_template"))
        url = _pg_url_for(need_postgres(), pg_name)
    try:
        imcloud = Cli(url)
        imcloud("init", "--simulated-clock", "2019-02-01")
        with cluster(url) as nodes:
            yield Shared(imcloud, nodes)
    finally:
        if pg_name is not None:
            drop_postgres_db(pg_name)


@dataclass(frozen=True)
class Reply:
    node: int
    body: dict[str, Any]
    data: dict[str, Any]
    start: float
    end: float


def race(nodes: Sequence[Node], app: dict[str, Any], calls: list[tuple[str, dict[str, Any]]]
         ) -> list[Reply]:
    """Fire every call at once, call i to node i mod len(nodes); every reply must be a
    well-formed HTTP 200 envelope."""
    clients = [V4(n.base, app["sdkappid"], app["secret_key"]) for n in nodes]
    prepared = [(i % len(nodes), clients[i % len(nodes)].url(path), body)
                for i, (path, body) in enumerate(calls)]  # signed before the start

    async def main() -> list[Reply]:
        limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=len(calls))
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            start = asyncio.Event()

            async def one(node: int, url: str, body: dict[str, Any]) -> Reply:
                await start.wait()
                t0 = time.monotonic()
                r = await http.post(url, json=body)
                t1 = time.monotonic()
                assert r.status_code == 200, r.text
                data: dict[str, Any] = r.json()
                assert {"ActionStatus", "ErrorCode", "ErrorInfo"} <= set(data), data
                assert data["ActionStatus"] == ("OK" if data["ErrorCode"] == 0 else "FAIL"), data
                return Reply(node, body, data, t0, t1)

            tasks = [asyncio.create_task(one(*p)) for p in prepared]
            await asyncio.sleep(0)  # every task is now waiting at the start line
            start.set()
            return list(await asyncio.gather(*tasks))

    try:
        return run(main())
    finally:
        for c in clients:
            c.http.close()


def codes(replies: Sequence[Reply]) -> dict[int, int]:
    return dict(Counter(r.data["ErrorCode"] for r in replies))


def peak_in_flight(replies: Sequence[Reply]) -> tuple[int, int]:
    """(most requests in flight at once, most in flight at once on every node together:
    the largest min over nodes), as the client saw it."""
    events = sorted([(r.start, 1, r.node) for r in replies] + [(r.end, -1, r.node)
                                                               for r in replies])
    per: Counter[int] = Counter()
    nodes = {r.node for r in replies}
    peak = both = 0
    for _, step, node in events:
        per[node] += step
        peak = max(peak, sum(per.values()))
        both = max(both, min(per[n] for n in nodes))
    return peak, both


def report(name: str, replies: Sequence[Reply], nodes: int = 2) -> None:
    """Every server (each its own process on its own port) answered part of the race,
    while the others had requests in flight too; print a summary."""
    per_node = Counter(r.node for r in replies)
    assert sorted(per_node) == list(range(nodes)) and min(per_node.values()) > 0, per_node
    by_node = {i: codes([r for r in replies if r.node == i]) for i in range(nodes)}
    peak, both = peak_in_flight(replies)
    assert both >= 2, "the two servers never had requests in flight at the same time"
    took = max(r.end for r in replies) - min(r.start for r in replies)
    print(f"{name}: {len(replies)} requests in {took:.2f}s; codes {codes(replies)}; "
          f"replies per server {dict(per_node)}, codes per server {by_node}; "
          f"peak in flight {peak} (both servers at once: {both})")


def import_users(v: V4, users: list[str]) -> None:
    for i in range(0, len(users), 100):
        assert v.ok(IMPORT, {"Accounts": users[i:i + 100]})["FailAccounts"] == []


def group_info(v: V4, gid: str) -> dict[str, Any]:
    info: dict[str, Any] = v.ok(INFO, {"GroupIdList": [gid]})["GroupInfo"][0]
    assert info["ErrorCode"] == 0, info
    return info


def member_ids(v: V4, gid: str) -> list[str]:
    data = v.ok(MEMBERS, {"GroupId": gid})
    ids = [m["Member_Account"] for m in data["MemberList"]]
    assert data["MemberNum"] == len(ids), data["MemberNum"]
    return ids


def add(v: V4, gid: str, users: list[str]) -> dict[str, Any]:
    return v(ADD, {"GroupId": gid, "MemberList": [{"Member_Account": u} for u in users]})


def av_rooms(v: V4) -> list[str]:
    data = v.ok(APP_GROUPS, {"GroupType": "AVChatRoom"})
    ids = [g["GroupId"] for g in data["GroupIdList"]]
    assert data["TotalCount"] == len(ids)
    return ids


# ------------------------------------------------------------------ E1 over HTTP, two nodes


def test_concurrent_joins_admit_exactly_the_free_places(shared: Shared) -> None:
    """Pro group (cap 200, no owner): 300 joins of one member each, at once, over two
    servers → exactly 200 admitted, 100 refused with 10014 (E1), nothing half-done (E2)."""
    app = make_app(shared.imcloud, "pro")
    free, n = scaled(200), scaled(300)
    users = [f"racer{i:04d}" for i in range(n)]
    nodes = shared.nodes
    with shared.clean():
        v = V4(nodes[0].base, app["sdkappid"], app["secret_key"])
        import_users(v, users)
        body: dict[str, Any] = {"Type": "Public", "Name": "race"}
        if free != 200:  # scaled down: the cap is set, not the Pro default
            body["MaxMemberCount"] = free
        gid = v.ok(CREATE, body)["GroupId"]
        info = group_info(v, gid)
        assert (info["MemberNum"], info["MaxMemberNum"]) == (0, free)

        replies = race(nodes, app, [
            (ADD, {"GroupId": gid, "MemberList": [{"Member_Account": u}]}) for u in users])

        assert codes(replies) == {0: free, GROUP_FULL: n - free}
        admitted = set()
        for r in replies:
            user = r.body["MemberList"][0]["Member_Account"]
            if r.data["ErrorCode"] == 0:
                assert r.data["MemberList"] == [{"Member_Account": user, "Result": 1}]
                admitted.add(user)
        assert len(admitted) == free
        report("members", replies)

        assert group_info(v, gid)["MemberNum"] == free
        assert set(member_ids(v, gid)) == admitted
        refused = [u for u in users if u not in admitted]
        for u in refused[:10]:  # a refusal left no membership behind (E2)
            assert v.ok(JOINED, {"Member_Account": u})["TotalCount"] == 0
        v.fail(ADD, {"GroupId": gid, "MemberList": [{"Member_Account": refused[0]}]},
               GROUP_FULL)


def test_concurrent_av_room_creation_stops_at_the_limit(shared: Shared) -> None:
    """Pro without unlimited AV rooms (50): 80 create_group AVChatRoom at once over two
    servers → exactly 50 rooms, 30 refusals with 10036."""
    app = make_app(shared.imcloud, "pro")
    free, n = scaled(50), scaled(80)
    nodes = shared.nodes
    with shared.clean():
        v = V4(nodes[0].base, app["sdkappid"], app["secret_key"])
        before = [v.ok(CREATE, {"Type": "AVChatRoom", "Name": f"pre{i}"})["GroupId"]
                  for i in range(50 - free)]

        replies = race(nodes, app, [(CREATE, {"Type": "AVChatRoom", "Name": f"room{i}"})
                                    for i in range(n)])

        assert codes(replies) == {0: free, AV_ROOM_LIMIT: n - free}
        made = {r.data["GroupId"] for r in replies if r.data["ErrorCode"] == 0}
        assert len(made) == free
        report("av rooms", replies)

        assert set(av_rooms(v)) == made | set(before)
        assert len(made | set(before)) == 50
        v.fail(CREATE, {"Type": "AVChatRoom", "Name": "one more"}, AV_ROOM_LIMIT)


def test_concurrent_joins_of_one_user_stop_at_groups_per_user(shared: Shared) -> None:
    """Trial (50 groups per user; 100 groups per app is enough): one user added to 80
    groups at once over two servers → exactly 50 joins, 30 refusals with 10037."""
    app = make_app(shared.imcloud)
    free, n = scaled(50), scaled(80)
    nodes = shared.nodes
    with shared.clean():
        v = V4(nodes[0].base, app["sdkappid"], app["secret_key"])
        import_users(v, ["joiner"])
        gids = [v.ok(CREATE, {"Type": "Public", "Name": f"g{i}"})["GroupId"]
                for i in range(50 - free + n)]
        before, raced = gids[:50 - free], gids[50 - free:]
        for gid in before:
            assert add(v, gid, ["joiner"])["ErrorCode"] == 0

        replies = race(nodes, app, [
            (ADD, {"GroupId": gid, "MemberList": [{"Member_Account": "joiner"}]})
            for gid in raced])

        assert codes(replies) == {0: free, GROUPS_PER_USER: n - free}
        won = {r.body["GroupId"] for r in replies if r.data["ErrorCode"] == 0}
        report("groups per user", replies)

        joined = v.ok(JOINED, {"Member_Account": "joiner"})
        assert joined["TotalCount"] == 50
        assert {g["GroupId"] for g in joined["GroupIdList"]} == won | set(before)
        for i in range(0, len(raced), 50):  # the refused groups took no seat (E2)
            infos = v.ok(INFO, {"GroupIdList": raced[i:i + 50]})["GroupInfo"]
            for g in infos:
                assert g["MemberNum"] == (1 if g["GroupId"] in won else 0), g
        lost = next(g for g in raced if g not in won)
        v.fail(ADD, {"GroupId": lost, "MemberList": [{"Member_Account": "joiner"}]},
               GROUPS_PER_USER)


# ------------------------------------------------------------------ E1 below HTTP
#
# Each concurrent transaction runs on its own engine, event loop and thread, as it would
# in its own server process: SQLite calls run inline on the event loop, so a transaction
# waiting for SQLite's write lock blocks its loop, and two on one loop could not overlap.


def in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> Future[T]:
    """Run the coroutine `make()` on a fresh event loop in a thread of its own."""
    future: Future[T] = Future()

    def target() -> None:
        try:
            future.set_result(asyncio.run(make()))
        except BaseException as e:
            future.set_exception(e)

    threading.Thread(target=target, daemon=True).start()
    return future


async def in_txn(db_url: str, sdkappid: int,
                 fn: Callable[[AsyncConnection, tenant.Tenant], Awaitable[T]],
                 *, before: Callable[[], None] | None = None) -> T:
    """fn(conn, tenant) in one write transaction on an engine of its own; `before` runs
    once connected, just before the transaction begins."""
    db = Database(db_url)
    try:
        async with db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
        if before is not None:
            before()
        async with db.write() as conn:
            t = await tenant.load(conn, sdkappid, CATALOG, UTC)
            return await fn(conn, t)
    finally:
        await db.dispose()


def outcome(future: Future[Any]) -> Any:
    """A transaction's result, or the §7 code it was refused with."""
    try:
        return future.result(timeout=120)
    except Refused as e:
        return e.code


async def read(db_url: str, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            return await fn(conn)
    finally:
        await db.dispose()


async def member_counts(db_url: str, sdkappid: int) -> dict[str, tuple[int, int]]:
    """Per group name: (its member_count, its member rows)."""
    c, m = im_groups.c, im_members.c
    rows = sa.select(sa.func.count()).where(
        m.sdkappid == c.sdkappid, m.group_id == c.group_id).scalar_subquery()

    async def q(conn: AsyncConnection) -> dict[str, tuple[int, int]]:
        return {r.name: (r.member_count, r.rows) for r in await conn.execute(
            sa.select(c.name, c.member_count, rows.label("rows")).where(c.sdkappid == sdkappid))}
    return await read(db_url, q)


async def joined_counts(db_url: str, sdkappid: int) -> dict[str, int]:
    a = accounts_table.c

    async def q(conn: AsyncConnection) -> dict[str, int]:
        return {r.user_id: r.joined_groups for r in await conn.execute(
            sa.select(a.user_id, a.joined_groups).where(a.sdkappid == sdkappid))}
    return await read(db_url, q)


@pytest.mark.parametrize(("tasks", "batch", "free"), [(32, 1, 12), (16, 3, 10)],
                         ids=["one-each", "three-each"])
def test_add_members_service_is_atomic_across_engines(db_url: str, tasks: int, batch: int,
                                                      free: int) -> None:
    """E1/E2 without the HTTP layer: `tasks` transactions, each on its own engine, loop
    and thread, call groups.add_members at once for a group with `free` places →
    exactly free // batch batches admitted, every other batch refused with 10014 and
    nothing of it kept."""
    _, app = new_app(db_url, "pro")
    sdkappid = int(app["sdkappid"])
    seeds = ["seed0", "seed1", "seed2"]
    users = [f"e{i:03d}" for i in range(tasks * batch)]
    chunks = [users[i:i + batch] for i in range(0, len(users), batch)]

    async def setup(conn: AsyncConnection, t: tenant.Tenant) -> str:
        await im_accounts.import_accounts(
            conn, t, [im_accounts.NewAccount(u) for u in seeds + users])
        return await groups.create(conn, t, groups.NewGroup(
            type="Public", name="e1", max_member_count=len(seeds) + free,
            members=[(u, groups.MEMBER) for u in seeds]))

    gid = run(in_txn(db_url, sdkappid, setup))
    start = threading.Barrier(tasks)

    def join(chunk: list[str]) -> Callable[[], Coroutine[Any, Any, Any]]:
        return lambda: in_txn(db_url, sdkappid,
                              lambda conn, t: groups.add_members(conn, t, gid, chunk),
                              before=lambda: start.wait(timeout=60))

    results = [outcome(f) for f in [in_thread(join(c)) for c in chunks]]

    wins = free // batch
    admitted: list[str] = []
    for chunk, result in zip(chunks, results, strict=True):
        if isinstance(result, list):
            assert result == [(u, 1) for u in chunk]
            admitted += chunk
        else:
            assert result == GROUP_FULL, result
    assert len(admitted) == wins * batch
    assert run(member_counts(db_url, sdkappid)) == {"e1": (len(seeds) + len(admitted),) * 2}
    joined = run(joined_counts(db_url, sdkappid))
    for u in users:
        assert joined[u] == (1 if u in admitted else 0), u


# ------------------------------------------------------------------ R5 / E3 grandfathering


def test_flagship_group_keeps_its_members_and_cap_after_a_downgrade_to_pro(db_url: str
                                                                           ) -> None:
    """A Flagship group of 1,500 members (cap 1,502) survives a change to Pro: it keeps
    members and cap; new Pro groups are capped at 200; the old group takes new members
    until its own cap, then 10014; its cap can't be raised above the Pro limit (E3)."""
    imcloud, app = new_app(db_url, "flagship")
    sdkappid = str(app["sdkappid"])
    users = [f"fan{i:04d}" for i in range(1503)]
    with cluster(db_url, 1) as (node,):
        v = V4(node.base, app["sdkappid"], app["secret_key"])
        import_users(v, users)
        old = v.ok(CREATE, {"Type": "Public", "Name": "big", "MaxMemberCount": 1502})["GroupId"]
        for i in range(0, 1500, 300):
            replies = v.ok(ADD, {"GroupId": old, "MemberList": [
                {"Member_Account": u} for u in users[i:i + 300]]})["MemberList"]
            assert [r["Result"] for r in replies] == [1] * 300
        assert group_info(v, old)["MemberNum"] == 1500

        imcloud("clock", "set", "2019-03-01")
        # R4a keeps Flagship's group_member_limit (2,000 is a valid Pro value); the
        # operator sets Pro's free default explicitly.
        shown = imcloud("app", "configure", sdkappid, "--edition", "pro",
                        "--group-member-limit", "200")
        assert shown["service_version"] == "Pro"
        assert shown["limits"]["group_members"] == 200

        info = group_info(v, old)  # R5: nothing removed, cap kept (E3)
        assert (info["MemberNum"], info["MaxMemberNum"]) == (1500, 1502)
        ids = member_ids(v, old)
        assert len(ids) == 1500 and set(ids) == set(users[:1500])
        assert v.ok(JOINED, {"Member_Account": users[0]})["TotalCount"] == 1

        # New groups obey Pro's 200.
        v.fail(CREATE, {"Type": "Public", "Name": "too big", "MaxMemberCount": 201},
               MEMBER_LIMIT)
        new = v.ok(CREATE, {"Type": "Public", "Name": "new"})["GroupId"]
        assert group_info(v, new)["MaxMemberNum"] == 200
        assert add(v, new, users[:201])["ErrorCode"] == GROUP_FULL  # all or nothing (E2)
        assert group_info(v, new)["MemberNum"] == 0
        assert [r["Result"] for r in v.ok(ADD, {"GroupId": new, "MemberList": [
            {"Member_Account": u} for u in users[:200]]})["MemberList"]] == [1] * 200
        assert add(v, new, [users[200]])["ErrorCode"] == GROUP_FULL
        small = v.ok(CREATE, {"Type": "Public", "Name": "small",
                              "MaxMemberCount": 100})["GroupId"]
        v.ok(MODIFY, {"GroupId": small, "MaxMemberNum": 200})  # E3: up to the limit
        v.fail(MODIFY, {"GroupId": small, "MaxMemberNum": 201}, MEMBER_LIMIT)
        assert group_info(v, small)["MaxMemberNum"] == 200

        # The old group takes members up to its own cap of 1,502.
        assert add(v, old, [users[1500]])["MemberList"] == [
            {"Member_Account": users[1500], "Result": 1}]
        assert add(v, old, users[1501:1503])["ErrorCode"] == GROUP_FULL  # 2 for 1 place
        assert group_info(v, old)["MemberNum"] == 1501
        assert add(v, old, [users[1501]])["MemberList"] == [
            {"Member_Account": users[1501], "Result": 1}]
        v.fail(ADD, {"GroupId": old, "MemberList": [{"Member_Account": users[1502]}]},
               GROUP_FULL)
        assert v.ok(JOINED, {"Member_Account": users[1502]})["TotalCount"] == 0

        # E3: its cap may not be raised above the Pro limit in force, nor below its members.
        v.fail(MODIFY, {"GroupId": old, "MaxMemberNum": 1600}, MEMBER_LIMIT)
        v.fail(MODIFY, {"GroupId": old, "MaxMemberNum": 200}, INVALID_PARAMETER)
        info = group_info(v, old)
        assert (info["MemberNum"], info["MaxMemberNum"]) == (1502, 1502)


def test_a_grandfathered_cap_may_be_kept_or_lowered(db_url: str) -> None:
    """E3 limits raising a cap to the limit in force; re-sending the cap a group already
    has (a client writing back the profile it read) or lowering it is no raise."""
    imcloud, app = new_app(db_url, "flagship")
    with cluster(db_url, 1) as (node,):
        v = V4(node.base, app["sdkappid"], app["secret_key"])
        old = v.ok(CREATE, {"Type": "Public", "Name": "big", "MaxMemberCount": 1502})["GroupId"]
        imcloud("clock", "set", "2019-03-01")
        imcloud("app", "configure", str(app["sdkappid"]), "--edition", "pro",
                "--group-member-limit", "200")
        v.fail(MODIFY, {"GroupId": old, "MaxMemberNum": 1600}, MEMBER_LIMIT)
        v.ok(MODIFY, {"GroupId": old, "Name": "big", "MaxMemberNum": 1502})
        v.ok(MODIFY, {"GroupId": old, "MaxMemberNum": 1501})
        assert group_info(v, old)["MaxMemberNum"] == 1501


def test_av_rooms_survive_a_downgrade_to_trial_and_block_new_ones_below_ten(db_url: str
                                                                              ) -> None:
    """Pro with 30 AVChatRooms, downgraded to Trial (10 rooms): all 30 stay, and a new
    room is refused (10036) until fewer than 10 exist."""
    imcloud, app = new_app(db_url, "pro")
    with cluster(db_url, 1) as (node,):
        v = V4(node.base, app["sdkappid"], app["secret_key"])
        rooms = [v.ok(CREATE, {"Type": "AVChatRoom", "Name": f"live{i}"})["GroupId"]
                 for i in range(30)]
        imcloud("clock", "set", "2019-03-01")
        shown = imcloud("app", "downgrade", str(app["sdkappid"]))
        assert shown["service_version"] == "Trial" and shown["limits"]["av_rooms"] == 10

        assert sorted(av_rooms(v)) == sorted(rooms)  # R5
        v.fail(CREATE, {"Type": "AVChatRoom", "Name": "new"}, AV_ROOM_LIMIT)
        while len(rooms) > 9:
            v.ok(DESTROY, {"GroupId": rooms.pop()})
            if len(rooms) >= 10:  # 29 … 10 existing: still at or over Trial's 10
                v.fail(CREATE, {"Type": "AVChatRoom", "Name": "new"}, AV_ROOM_LIMIT)
        assert len(av_rooms(v)) == 9
        rooms.append(v.ok(CREATE, {"Type": "AVChatRoom", "Name": "tenth"})["GroupId"])
        assert sorted(av_rooms(v)) == sorted(rooms) and len(rooms) == 10
        v.fail(CREATE, {"Type": "AVChatRoom", "Name": "eleventh"}, AV_ROOM_LIMIT)


# ------------------------------------------------------------------ lock order
#
# Two transactions that take the same rows in opposite orders deadlock on PostgreSQL
# (one is aborted after deadlock_timeout; over HTTP it is retried, and under load the
# retries run out: 10002). A third transaction holding one row makes the interleaving
# deterministic. On SQLite a writer holds the whole database, so the same script runs
# the transactions one after another and must pass as well.


@contextmanager
def holding(db_url: str, statement: sa.Executable) -> Iterator[None]:
    """A transaction, in a thread of its own, that has run `statement` (taking its row;
    on SQLite the database's write lock) and keeps it until the block ends."""
    ready, release = threading.Event(), threading.Event()

    async def hold() -> None:
        db = Database(db_url)
        try:
            async with db.write() as conn:
                await conn.execute(statement)
                ready.set()
                while not release.is_set():
                    await asyncio.sleep(0.01)
        finally:
            await db.dispose()

    held = in_thread(hold)
    while not ready.wait(0.1):
        assert not held.done(), held.exception()
    try:
        yield
    finally:
        release.set()
        held.result(timeout=60)


def waiting(db_url: str, n: int) -> None:
    """Until n transactions wait for a row lock (SQLite: writers queue for the database
    lock; a short pause lets them get there)."""
    if db_url.startswith("sqlite"):
        time.sleep(0.5)
        return
    count = sa.text("SELECT count(*) FROM pg_stat_activity WHERE "
                    "datname = current_database() AND wait_event_type = 'Lock'")

    async def q(conn: AsyncConnection) -> int:
        return int(await conn.scalar(count) or 0)

    deadline = time.monotonic() + 30
    while run(read(db_url, q)) < n:
        assert time.monotonic() < deadline, f"{n} transactions never waited for a lock"
        time.sleep(0.05)


def two_users_and_a_group(db_url: str, sdkappid: int, **group: Any) -> str:
    async def setup(conn: AsyncConnection, t: tenant.Tenant) -> str:
        await im_accounts.import_accounts(
            conn, t, [im_accounts.NewAccount(u) for u in ("u1", "u2")])
        return await groups.create(conn, t, groups.NewGroup(type="Public", **group))
    return run(in_txn(db_url, sdkappid, setup))


def lock_account(sdkappid: int, user: str) -> sa.Executable:
    a = accounts_table.c
    return (sa.update(accounts_table).where(a.sdkappid == sdkappid, a.user_id == user)
            .values(joined_groups=a.joined_groups))


def test_create_and_destroy_sharing_members_do_not_deadlock(db_url: str) -> None:
    """destroy_group of a group of u1 and u2, and create_group with u1 and u2, at once:
    both complete. (Regression: before d79d3fe, destroy took the accounts and then the
    app's counters, create the counters and then the accounts: they deadlocked on
    PostgreSQL, and over HTTP clients got 10002 under load.)"""
    _, app = new_app(db_url, "pro")
    sdkappid = int(app["sdkappid"])
    old = two_users_and_a_group(db_url, sdkappid, name="old", owner="u1",
                                members=[("u2", groups.MEMBER)])
    with holding(db_url, lock_account(sdkappid, "u2")):
        destroying = in_thread(lambda: in_txn(
            db_url, sdkappid, lambda conn, t: groups.destroy(conn, t, old)))
        waiting(db_url, 1)  # destroy holds u1 (and, since the fix, the counters)
        creating = in_thread(lambda: in_txn(
            db_url, sdkappid, lambda conn, t: groups.create(conn, t, groups.NewGroup(
                type="Public", name="new", owner="u1", members=[("u2", groups.MEMBER)]))))
        waiting(db_url, 2)
    assert [f.exception(timeout=60) for f in (destroying, creating)] == [None, None]
    assert run(member_counts(db_url, sdkappid)) == {"new": (2, 2)}
    assert run(joined_counts(db_url, sdkappid)) == {"u1": 1, "u2": 1}


def test_account_delete_during_a_join_leaves_no_ghost_seat(db_url: str) -> None:
    """account_delete of u1 while u1 is added to another group: afterwards every group's
    member count is the number of its members, and the one-place group admits u2.
    (Regression: before d79d3fe, delete read u1's memberships before locking anything;
    the join committed in between and its membership was deleted without its seat, so
    the group refused joins below its cap.)"""
    _, app = new_app(db_url, "pro")
    sdkappid = int(app["sdkappid"])
    old = two_users_and_a_group(db_url, sdkappid, name="old", members=[("u1", groups.MEMBER)])

    async def one_place_group(conn: AsyncConnection, t: tenant.Tenant) -> str:
        return await groups.create(conn, t, groups.NewGroup(
            type="Public", name="one place", max_member_count=1))
    one_place = run(in_txn(db_url, sdkappid, one_place_group))
    c = im_groups.c

    def join(user: str) -> Future[Any]:
        return in_thread(lambda: in_txn(
            db_url, sdkappid, lambda conn, t: groups.add_members(conn, t, one_place, [user])))

    with holding(db_url, sa.update(im_groups).where(c.sdkappid == sdkappid, c.group_id == old)
                 .values(member_count=c.member_count)):
        deleting = in_thread(lambda: in_txn(
            db_url, sdkappid, lambda conn, t: im_accounts.delete(conn, t, ["u1"])))
        waiting(db_url, 1)  # delete has read u1's memberships and waits for `old`
        joining = join("u1")
        wait([joining], timeout=1)  # it commits meanwhile, or waits for u1
    assert deleting.exception(timeout=60) is None
    # the join came first (and the delete took its membership and seat back), or found
    # the account gone when it looked (Result 0) or when it took its row (10019)
    assert outcome(joining) in ([("u1", 1)], [("u1", 0)], ACCOUNT_NOT_FOUND)
    counts = run(member_counts(db_url, sdkappid))
    assert all(n == rows for n, rows in counts.values()), counts
    assert outcome(join("u2")) == [("u2", 1)]


def test_account_delete_and_a_join_into_its_group_do_not_deadlock(
        db_url: str) -> None:
    """account_delete of u1 and u2 while u2 is added to a group u1 is in: both complete,
    and the group's count matches its members."""
    _, app = new_app(db_url, "pro")
    sdkappid = int(app["sdkappid"])
    gid = two_users_and_a_group(db_url, sdkappid, name="g", members=[("u1", groups.MEMBER)])
    with holding(db_url, lock_account(sdkappid, "u2")):
        deleting = in_thread(lambda: in_txn(
            db_url, sdkappid, lambda conn, t: im_accounts.delete(conn, t, ["u1", "u2"])))
        waiting(db_url, 1)  # delete has locked u1 and waits for u2
        joining = in_thread(lambda: in_txn(
            db_url, sdkappid, lambda conn, t: groups.add_members(conn, t, gid, ["u2"])))
        waiting(db_url, 2)  # the join has locked the group and waits for u2
    assert deleting.exception(timeout=60) is None
    assert outcome(joining) in ([("u2", 1)], [("u2", 0)], ACCOUNT_NOT_FOUND)
    assert run(member_counts(db_url, sdkappid)) == {"g": (0, 0)}
