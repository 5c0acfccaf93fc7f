"""Two `imcloud serve` processes sharing the test PostgreSQL and Redis (SPEC §9, E1, R6):
a message crosses nodes, the member cap holds with joins spread over both, and
disabling an app closes its sockets on every node — told through Redis, or noticed by
polling the shared database when the CLI has no broker to tell.

Both nodes run with IMCLOUD_BROKER_URL set to the test Redis. Pub/sub channels are
global to a Redis server, so these tests keep apart from anything else using it the
way tenants do: each test makes its own apps, and channels are per app.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from imcloud.client import ChatClient, ClientError
from tests.conftest import run
from tests.integration.test_realtime import (
    APP_DISABLED,
    BAD_SIGNATURE,
    CLOSE_DISABLED,
    CLOSE_REFUSED,
    CREATE,
    GROUP_FULL,
    INFO,
    SEND_GROUP,
    App,
    Env,
    RawSocket,
    admin,
    chat,
    closes,
    fresh_database,
    gather_limited,
    import_users,
    next_of,
    serving,
    small_room,
    text,
    text_of,
    ws_url,
)

pytestmark = pytest.mark.postgres

MEMBERS = "group_open_http_svc/get_group_member_info"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Env]:
    """Nodes A and B on one PostgreSQL database, with Redis between them."""
    with (fresh_database(request, "postgres") as url,
          serving(url, nodes=2, env={"IMCLOUD_BROKER_URL": redis_url}) as e):
        yield e


def test_a_client_on_node_a_gets_what_is_sent_on_node_b(cluster: Env) -> None:
    a, b = (n.base for n in cluster.nodes)
    app = cluster.new_app()

    async def scenario() -> None:
        async with admin(b, app) as adm_b:
            await import_users(adm_b, ["alice", "bob"])
            gid = (await adm_b.call(CREATE, {"Type": "Public", "Name": "pub",
                                             "ApplyJoinOption": "FreeAccess"}))["GroupId"]
            alice, bob = await chat(a, app, "alice"), await chat(b, app, "bob")
            try:
                await alice.join(gid)
                assert (await next_of(alice, "joined"))["group"] == gid
                await bob.join(gid)
                assert await bob.send_group(gid, "from node B") == 1
                got = await next_of(alice, "msg")
                assert (got["seq"], got["from"], text_of(got)) == (1, "bob", "from node B")
                assert await alice.send_group(gid, "from node A") == 2
                assert [text_of(await next_of(bob, "msg")) for _ in "12"] == [
                    "from node B", "from node A"]  # a sender hears its own message too

                key = await bob.send_c2c("alice", "one to one, B to A")
                got = await next_of(alice, "c2c")
                assert (got["key"], text_of(got)) == (key, "one to one, B to A")
                await alice.send_c2c("bob", "and back")
                assert text_of(await next_of(bob, "c2c", "alice")) == "and back"

                reply = await adm_b.call(SEND_GROUP, {"GroupId": gid, "Random": 1,
                                                      "MsgBody": text("REST on node B")})
                got = await next_of(alice, "msg")
                assert (got["seq"], text_of(got)) == (reply["MsgSeq"], "REST on node B")
            finally:
                await alice.close()
                await bob.close()

    run(scenario())


def test_the_200_member_cap_holds_with_joins_spread_over_both_nodes(cluster: Env) -> None:
    """E1: 250 users, half on each node, all send `join` at once to a Public FreeAccess
    group of a Pro app (member limit 200): exactly 200 are admitted."""
    nodes = [n.base for n in cluster.nodes]
    app = cluster.new_app("pro")
    users = [f"user{i:03}" for i in range(250)]

    async def join(client: ChatClient, gid: str) -> int:
        try:
            await client.join(gid)
            return 0
        except ClientError as e:
            return e.code

    async def scenario() -> None:
        async with admin(nodes[0], app) as adm:
            await import_users(adm, users)
            gid = (await adm.call(CREATE, {"Type": "Public", "Name": "full",
                                           "ApplyJoinOption": "FreeAccess"}))["GroupId"]
            clients = await gather_limited(25, [
                functools.partial(chat, nodes[i % 2], app, u) for i, u in enumerate(users)])
            try:
                codes = await asyncio.gather(*(join(c, gid) for c in clients))
                assert Counter(codes) == {0: 200, GROUP_FULL: 50}
                info = (await adm.call(INFO, {"GroupIdList": [gid]}))["GroupInfo"][0]
                assert (info["MemberNum"], info["MaxMemberNum"]) == (200, 200)
                members = (await adm.call(MEMBERS, {"GroupId": gid}))["MemberList"]
                admitted = {c.user for c, code in zip(clients, codes, strict=True) if not code}
                assert {m["Member_Account"] for m in members} == admitted
                assert Counter(i % 2 for i, code in enumerate(codes) if not code).keys() == {
                    0, 1}  # both nodes admitted some
            finally:
                await asyncio.gather(*(c.close() for c in clients))

    run(scenario())


async def disable_and_time(cluster: Env, app: App, clients: list[ChatClient]
                           ) -> tuple[float, float]:
    """Disable with the CLI; (seconds from the command's start, from its end) until the
    last of `clients` was closed."""
    start = time.monotonic()
    await asyncio.to_thread(cluster.imcloud, "app", "disable", str(app.sdkappid),
                            "--confirm", app.name)
    done = time.monotonic()
    closed = await asyncio.gather(*(closes(c) for c in clients))
    assert [c.close_code for c in clients] == [CLOSE_DISABLED] * len(clients)
    return max(closed) - start, max(closed) - done


async def logins_refused(cluster: Env, app: App) -> None:
    for node in cluster.nodes:
        raw = await RawSocket.at(ws_url(node.base, app.sdkappid, "u0", app.sig("u0")))
        assert await raw.refused() == (APP_DISABLED, CLOSE_DISABLED)
        async with admin(node.base, app) as adm:
            with pytest.raises(ClientError) as e:
                await adm.call(INFO, {"GroupIdList": ["any"]})
            assert e.value.code == APP_DISABLED


def disable_across_nodes(cluster: Env, label: str) -> None:
    """Sessions of the app on node B (and one on A) are all closed with 4003 within
    5 s of the CLI's disable; new logins on either node get 60016."""
    a, b = (n.base for n in cluster.nodes)
    app = cluster.new_app("pro")
    bystander_app = cluster.new_app()
    users = [f"u{i}" for i in range(10)]

    async def scenario() -> None:
        adm, gid = await small_room(b, app, *users)
        badm, bgid = await small_room(a, bystander_app, "x")
        clients = [await chat(b, app, u) for u in users] + [await chat(a, app, "u0")]
        bystander = await chat(b, bystander_app, "x")
        try:
            await clients[-1].send_group(gid, "live on both nodes")
            for c in clients:
                assert text_of(await next_of(c, "msg")) == "live on both nodes"
            from_start, from_end = await disable_and_time(cluster, app, clients)
            print(f"\n{label}: last socket closed {from_start:.3f} s after the disable "
                  f"command started, {from_end:+.3f} s after it returned")
            assert from_start < 5  # R6 allows 5 s here; the goal (SPEC §10) is 1 s
            await logins_refused(cluster, app)
            assert not bystander.closed.is_set()
            assert await bystander.send_group(bgid, "another app goes on") == 1
        finally:
            await bystander.close()
            await adm.close()
            await badm.close()

    run(scenario())


def test_disabling_an_app_closes_its_sockets_on_every_node_through_redis(
        cluster: Env, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMCLOUD_BROKER_URL", redis_url)  # the CLI tells the nodes
    disable_across_nodes(cluster, "R6 through Redis")


def test_disabling_an_app_closes_its_sockets_on_every_node_without_a_broker_notice(
        cluster: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMCLOUD_BROKER_URL", raising=False)  # nodes must notice alone
    disable_across_nodes(cluster, "R6 by polling")


def test_refused_login_on_either_node(cluster: Env) -> None:
    app = cluster.new_app()
    forged = App(app.sdkappid, app.name, "0" * 64)

    async def scenario() -> None:
        async with admin(cluster.base, app) as adm:
            await import_users(adm, ["alice"])
        for node in cluster.nodes:
            raw = await RawSocket.at(ws_url(node.base, app.sdkappid, "alice",
                                            forged.sig("alice")))
            assert await raw.refused() == (BAD_SIGNATURE, CLOSE_REFUSED)

    run(scenario())
