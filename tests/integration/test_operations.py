"""Operations (docs/operations.md) on real `imcloud serve` processes on 127.0.0.1:
readiness, Prometheus metrics, JSON logs with request ids and no secrets, online backup
and restore of SQLite under a write load, and SIGTERM draining WebSockets into a
restarted server with nothing lost or repeated.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from imcloud.client import ChatClient, ClientError, user_sig
from tests.conftest import Cli, _pg_url_for, need_postgres, run
from tests.console.conftest import PASSWORDS, api_client, new_console_db, sign_in_http
from tests.integration.test_realtime import (
    ADD,
    CREATE,
    GROUP_HISTORY,
    INFO,
    LOGIN,
    MULTI_IMPORT,
    QUIET,
    SEND_GROUP,
    START,
    App,
    RawSocket,
    chat,
    serving,
    text,
)
from tests.integration.test_serve import free_port
from tests.v4client import V4, Node

IMCLOUD = str(Path(sys.executable).with_name("imcloud"))
CLOSE_RESTART = 1012


def sqlite_db(tmp_path: Path, template: Path, name: str = "imcloud.db") -> tuple[Path, str]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, path)
    return path, f"sqlite:///{path}"


def wait_for(test: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what or test}"
        time.sleep(0.05)


# ------------------------------------------------------------------ readiness


def test_readyz_is_200_when_the_database_and_redis_answer(db_url: str, redis_url: str) -> None:
    with serving(db_url, env={"IMCLOUD_BROKER_URL": redis_url}) as env:
        r = httpx.get(f"{env.base}/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}
        assert httpx.get(f"{env.base}/healthz").json() == {"status": "ok"}


def test_readyz_is_503_naming_the_broker_when_redis_is_unreachable(
    tmp_path: Path, sqlite_template: Path
) -> None:
    _, url = sqlite_db(tmp_path, sqlite_template)
    Cli(url)("init", "--simulated-clock", START)
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    node = Node(url, {**QUIET, "IMCLOUD_BROKER_URL": nobody})
    try:
        assert httpx.get(f"{node.base}/healthz").status_code == 200  # alive, not ready
        r = httpx.get(f"{node.base}/readyz")
        assert r.status_code == 503, r.text
        body = r.json()
        assert (body["status"], body["failed"]) == ("unavailable", ["broker"]), body
        assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"
    finally:
        node.stop()
    assert any("not ready" in line and "broker" in line for line in node.lines), node.lines


@pytest.mark.postgres
def test_readyz_is_503_naming_the_database_when_postgres_is_unreachable() -> None:
    url = _pg_url_for(need_postgres(), "imcloud_no_such_database")
    node = Node(url, QUIET)
    try:
        r = httpx.get(f"{node.base}/readyz")
        assert r.status_code == 503, r.text
        body = r.json()
        assert (body["status"], body["failed"]) == ("unavailable", ["database"]), body
        assert body["checks"]["broker"] == "ok (in-process)"
    finally:
        node.stop()


# ------------------------------------------------------------------ metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return metric(after, name, **labels) - metric(before, name, **labels)


def test_metrics_count_v4_calls_refusals_sockets_and_deliveries(
    tmp_path: Path, sqlite_template: Path
) -> None:
    _, url = sqlite_db(tmp_path, sqlite_template)
    with serving(url) as env:
        base = env.base
        app = env.new_app()
        v = V4(base, app.sdkappid, app.key)
        m0 = scrape(base)
        v.ok(MULTI_IMPORT, {"Accounts": ["m0", "m1", "m2", "alice", "bob"]})
        gid = v.ok(
            CREATE,
            {
                "Owner_Account": "m0",
                "Type": "Public",
                "Name": "small",
                "ApplyJoinOption": "FreeAccess",
                "MaxMemberCount": 3,
            },
        )["GroupId"]
        v.fail(
            ADD,
            {"GroupId": gid, "MemberList": [{"Member_Account": u} for u in ("m1", "m2", "alice")]},
            10014,
        )
        v.fail("no_such_service/nothing", {}, 10003)
        v.fail(CREATE, {"Type": "NoSuchType", "Name": "x"}, 10004)
        m1 = scrape(base)
        v4 = "imcloud_v4_requests_total"
        assert moved(m0, m1, v4, command=MULTI_IMPORT, code="0") == 1
        assert moved(m0, m1, v4, command=CREATE, code="0") == 1
        assert moved(m0, m1, v4, command=ADD, code="10014") == 1
        assert moved(m0, m1, v4, command="unknown", code="10003") == 1
        assert moved(m0, m1, v4, command=CREATE, code="10004") == 1
        assert moved(m0, m1, "imcloud_v4_request_seconds_total", command=CREATE) > 0
        for code in ("10014", "10003", "10004"):  # whatever code the envelope carries
            assert moved(m0, m1, "imcloud_refusals_total", surface="v4", code=code) == 1
        assert moved(m0, m1, "imcloud_refusals_total", surface="v4", code="0") == 0

        async def sockets() -> None:
            alice, bob = await chat(base, app, "alice"), await chat(base, app, "bob")
            try:
                assert metric(scrape(base), "imcloud_ws_connections") == 2
                await alice.join(gid)  # over the socket: members m0, alice
                await bob.join(gid)  # m0, alice, bob: full
                late = await chat(base, app, "m1")
                with pytest.raises(ClientError) as full:
                    await late.join(gid)
                assert full.value.code == 10014
                await late.close()
                with pytest.raises(ClientError) as refused_login:
                    await ChatClient.connect(base, app.sdkappid, "alice", "not-a-sig")
                m2 = scrape(base)
                for i in range(5):
                    v.ok(
                        SEND_GROUP,
                        {
                            "GroupId": gid,
                            "Random": i,
                            "From_Account": "m0",
                            "MsgBody": text(f"hello {i}"),
                        },
                    )
                for client in (alice, bob):
                    while client.last_seq.get(gid, 0) < 5:
                        await client.next()
                m3 = scrape(base)
                assert moved(m2, m3, "imcloud_ws_messages_delivered_total") == 10
                assert moved(m1, m3, "imcloud_refusals_total", surface="ws", code="10014") == 1
                assert (
                    moved(
                        m1,
                        m3,
                        "imcloud_refusals_total",
                        surface="ws",
                        code=str(refused_login.value.code),
                    )
                    == 1
                )
            finally:
                await alice.close()
                await bob.close()

        run(sockets())
        wait_for(
            lambda: metric(scrape(base), "imcloud_ws_connections") == 0,
            what="the sockets to be gone from the gauge",
        )
        m4 = scrape(base)
        assert metric(m4, "imcloud_build_info", version="0.1.0") == 1
        assert metric(m4, "process_resident_memory_bytes") > 0


def test_metrics_count_bill_runs_and_the_bills_they_issue(
    tmp_path: Path, sqlite_template: Path
) -> None:
    _, url = sqlite_db(tmp_path, sqlite_template)
    with serving(url, env={"IMCLOUD_BILL_CHECK_SECONDS": "0.2"}) as env:
        apps = [env.new_app(), env.new_app("pro")]
        before = scrape(env.base)
        assert metric(before, "imcloud_bill_runs_total") == 0
        env.imcloud("clock", "set", "2019-05-03")  # March's and April's bills are due
        wait_for(
            lambda: metric(scrape(env.base), "imcloud_bill_runs_total") == 2, what="two bill runs"
        )
        issued = sum(len(env.imcloud("bill", "list", str(a.sdkappid))) for a in apps)
        assert issued >= 2
        after = scrape(env.base)
        assert moved(before, after, "imcloud_bills_issued_total") == issued
        assert metric(after, "imcloud_housekeeping_failures_total") == 0


# ------------------------------------------------------------------ logs


def test_json_logs_carry_request_ids_and_never_a_secret(tmp_path: Path) -> None:
    db, imcloud = new_console_db(tmp_path)
    made = imcloud("app", "create", "logged", "--owner", "alice")
    sdkappid, key = int(made["sdkappid"]), str(made["secret_key"])
    node = Node(db, QUIET)
    secrets: list[str] = [key, *PASSWORDS.values(), "wrong-password-9"]
    try:
        base = node.base
        v = V4(base, sdkappid, key)
        admin_sig = v.sig()
        secrets.append(admin_sig)
        r = v.http.post(
            v.url(f"{LOGIN}/account_import", usersig=admin_sig),
            json={"UserID": "alice"},
            headers={"X-Request-Id": "ops-req-0001"},
        )
        assert r.json()["ErrorCode"] == 0 and r.headers["x-request-id"] == "ops-req-0001"
        for bad in ("x" * 129, "has space", "<script>", ""):  # replaced, never echoed
            r = v.http.post(
                v.url(f"{LOGIN}/account_check"),
                json={"CheckItem": []},
                headers={"X-Request-Id": bad},
            )
            assert re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"]), bad
        generated = v.http.post(v.url("no_such/command")).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", generated)

        alice_sig = user_sig(sdkappid, key, "alice")
        secrets.append(alice_sig)

        async def socket() -> None:
            client = await ChatClient.connect(base, sdkappid, "alice", alice_sig)
            await client.close()

        run(socket())

        api = api_client(base, "alice")  # password in a JSON body
        secrets += [api.cookies["imcloud_session"], str(api.headers["X-CSRF-Token"])]
        assert api.get(f"/console/api/apps/{sdkappid}/secret").json()["secret_key"] == key
        second = api.post("/console/api/apps", json={"name": "second"}).json()
        secrets.append(second["secret_key"])
        form = sign_in_http(base, "bob")  # password and CSRF token in a form
        secrets += [form.cookies["imcloud_session"], form.csrf]  # type: ignore[attr-defined]
        secrets += [c.value for c in form.cookies.jar if c.name == "imcloud_csrf"]
        r = httpx.post(
            f"{base}/console/api/login",
            headers={"X-Request-Id": "ops-login-1"},
            json={"username": "alice", "password": "wrong-password-9"},
        )
        assert r.status_code == 401 and r.headers["x-request-id"] == "ops-login-1"
    finally:
        node.stop()

    raw = "".join(node.lines)
    lines = [json.loads(line) for line in node.lines if line.strip()]  # every line is JSON
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line), line
    [call] = [x for x in lines if x["request_id"] == "ops-req-0001"]
    assert call["logger"] == "imcloud.access" and call["level"] == "INFO"
    assert (call["command"], call["sdkappid"], call["error_code"]) == (
        f"{LOGIN}/account_import",
        sdkappid,
        0,
    )
    assert isinstance(call["duration_ms"], float | int) and call["duration_ms"] >= 0
    assert any(
        x["request_id"] == generated and x.get("command") == "unknown" and x["error_code"] == 10003
        for x in lines
    )
    # a line logged inside the request (the failed sign-in) carries its id too
    failed = [x for x in lines if x["request_id"] == "ops-login-1"]
    assert {x["logger"] for x in failed} == {"imcloud.console", "imcloud.access"}, failed
    assert any("sign-in failed" in x["message"] for x in failed)
    assert any(
        "WebSocket /v1/ws" in x["message"] and "usersig=[redacted]" in x["message"] for x in lines
    ), "the socket's login line is there, redacted"
    assert "POST /console/login" in raw and f"/console/api/apps/{sdkappid}/secret" in raw
    for secret in secrets:
        assert secret and secret not in raw, f"a secret is in the log: {secret[:6]}…"


def test_text_logs_and_no_access_log_are_settings(tmp_path: Path) -> None:
    db, _ = new_console_db(tmp_path)
    node = Node(db, {**QUIET, "IMCLOUD_LOG_FORMAT": "text", "IMCLOUD_ACCESS_LOG": "off"})
    try:
        r = httpx.post(
            f"{node.base}/console/api/login",
            headers={"X-Request-Id": "ops-txt-1"},
            json={"username": "alice", "password": "wrong-password-9"},
        )
        assert r.status_code == 401
    finally:
        node.stop()
    [failed] = [line for line in node.lines if "[ops-txt-1]" in line]
    assert " WARNING imcloud.console [ops-txt-1] console sign-in failed" in failed
    assert not failed.startswith("{")
    assert not [line for line in node.lines if "imcloud.access" in line]
    assert "wrong-password-9" not in "".join(node.lines)


# ------------------------------------------------------------------ backup and restore


class Load:
    """The app's backend writing through the v4 API on threads of its own: group
    messages, and members joining groups; each write is recorded once acknowledged."""

    def __init__(self, base: str, app: App, groups: list[str], joiners: list[str]):
        self.base, self.app, self.groups, self.joiners = base, app, groups, joiners
        self.sent: list[tuple[str, int, float]] = []  # (group, MsgSeq, acknowledged at)
        self.joined: list[tuple[str, str, float]] = []  # (group, user, acknowledged at)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send), threading.Thread(target=self._join)]
        for t in self.threads:
            t.start()

    def _client(self) -> V4:
        return V4(self.base, self.app.sdkappid, self.app.key)

    def _send(self) -> None:
        v = self._client()
        i = 0
        while not self.stop.is_set():
            g = self.groups[i % len(self.groups)]
            r = v.ok(
                SEND_GROUP,
                {"GroupId": g, "Random": i, "From_Account": "owner", "MsgBody": text(f"m{i}")},
            )
            self.sent.append((g, int(r["MsgSeq"]), time.monotonic()))
            i += 1

    def _join(self) -> None:
        v = self._client()
        for i, user in enumerate(self.joiners):
            if self.stop.is_set():
                return
            g = self.groups[i % len(self.groups)]
            v.ok(ADD, {"GroupId": g, "MemberList": [{"Member_Account": user}]})
            self.joined.append((g, user, time.monotonic()))
            time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IMCLOUD, *args, "--json"], capture_output=True, text=True, timeout=120)


def database_facts(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "messages": set(conn.execute("SELECT group_id, msg_seq FROM im_group_messages")),
            "members": set(conn.execute("SELECT group_id, user_id FROM im_members")),
            "groups": {
                g: (count, last)
                for g, count, last in conn.execute(
                    "SELECT group_id, member_count, last_msg_seq FROM im_groups"
                )
            },
            "member_rows": dict(
                conn.execute("SELECT group_id, count(*) FROM im_members GROUP BY group_id")
            ),
            "plan_events": list(
                conn.execute(
                    "SELECT sdkappid, seq, operation FROM plan_events ORDER BY sdkappid, seq"
                )
            ),
        }
    finally:
        conn.close()


def test_backup_under_write_load_restores_a_consistent_database(
    tmp_path: Path, sqlite_template: Path
) -> None:
    live, url = sqlite_db(tmp_path / "live", sqlite_template)
    backup_file = tmp_path / "backups" / "imcloud-backup.db"
    with serving(url) as env:
        app = env.new_app("pro")
        v = V4(env.base, app.sdkappid, app.key)
        joiners = [f"u{i:03}" for i in range(150)]
        v.ok(MULTI_IMPORT, {"Accounts": ["owner", *joiners[:99]]})
        v.ok(MULTI_IMPORT, {"Accounts": joiners[99:]})
        groups = [
            v.ok(CREATE, {"Owner_Account": "owner", "Type": "Public", "Name": f"g{i}"})["GroupId"]
            for i in range(3)
        ]
        load = Load(env.base, app, groups, joiners)
        try:
            wait_for(lambda: len(load.sent) >= 60 and len(load.joined) >= 20, what="load")
            began = time.monotonic()
            done = cli("backup", str(backup_file), "--db", url)
            ended = time.monotonic()
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            assert report["integrity"] == "ok" and report["bytes"] > 0
            sent_before = {(g, s) for g, s, at in load.sent if at < began}
            joined_before = {(g, u) for g, u, at in load.joined if at < began}
            wait_for(
                lambda: any(at > ended for _, _, at in load.sent), what="writes after the backup"
            )  # the server kept writing throughout
            # a restore under the running server is refused, and changes nothing
            refused = env.imcloud.refused("restore", str(backup_file))
            assert "server is using" in refused["message"], refused
            assert not list(live.parent.glob("*.pre-restore-*"))
        finally:
            load.finish()
        # a plan change after the backup: the restored history must not have it
        env.imcloud("app", "configure", str(app.sdkappid), "--content-filtering", "on")
        history_live = env.imcloud("app", "history", str(app.sdkappid))

    fresh, fresh_url = tmp_path / "fresh" / "imcloud.db", f"sqlite:///{tmp_path}/fresh/imcloud.db"
    done = cli("restore", str(backup_file), "--db", fresh_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["previous"] is None
    facts = database_facts(fresh)
    assert facts["integrity"] == "ok"
    assert sent_before <= facts["messages"]  # every message acknowledged before it began
    assert joined_before <= facts["members"]
    for g, (count, last) in facts["groups"].items():  # one snapshot: counters match rows
        assert count == facts["member_rows"].get(g, 0), g
        assert {s for gg, s in facts["messages"] if gg == g} == set(range(1, last + 1)), g
    assert len(facts["messages"]) < len(database_facts(live)["messages"])  # load went on

    with serving(fresh_url) as restored:  # a server runs on the restored database
        history = restored.imcloud("app", "history", str(app.sdkappid))
        assert history == history_live[:-1]  # plan history intact, up to the backup
        v = V4(restored.base, app.sdkappid, app.key)
        for g in groups:
            info = v.ok(INFO, {"GroupIdList": [g]})["GroupInfo"][0]
            assert info["MemberNum"] == facts["groups"][g][0]
            newest = v.ok(GROUP_HISTORY, {"GroupId": g, "ReqMsgNumber": 1})["RspMsgList"]
            assert newest[0]["MsgSeq"] == facts["groups"][g][1]
            assert (
                v.ok(
                    SEND_GROUP,
                    {
                        "GroupId": g,
                        "Random": 1,
                        "From_Account": "owner",
                        "MsgBody": text("after restore"),
                    },
                )["MsgSeq"]
                == facts["groups"][g][1] + 1
            )

    # restoring over the (stopped) live database keeps the one it replaces
    done = cli("restore", str(backup_file), "--db", url)
    assert done.returncode == 0, done.stderr
    previous = Path(json.loads(done.stdout)["previous"])
    assert previous.exists() and previous.parent == live.parent
    assert database_facts(live)["messages"] == facts["messages"]
    assert len(database_facts(previous)["messages"]) > len(facts["messages"])


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["backup", "restore"])
def test_backup_and_restore_send_postgresql_to_pg_dump(command: str, tmp_path: Path) -> None:
    done = cli(command, str(tmp_path / "x.db"), "--db", need_postgres())
    assert done.returncode == 2
    assert "pg_dump" in done.stderr and "PostgreSQL" in done.stderr
    assert "pg_dump" in json.loads(done.stdout)["error"]["message"]
    assert not (tmp_path / "x.db").exists()


# ------------------------------------------------------------------ graceful shutdown


def test_sigterm_drains_sockets_and_clients_resume_on_a_new_server_exactly_once(
    tmp_path: Path, sqlite_template: Path
) -> None:
    _, url = sqlite_db(tmp_path, sqlite_template)
    imcloud = Cli(url)
    imcloud("init", "--simulated-clock", START)
    shown = imcloud("app", "create", "drain")
    app = App(shown["sdkappid"], shown["name"], shown["secret_key"])
    env = {**QUIET, "IMCLOUD_SHUTDOWN_TIMEOUT": "6"}
    port = free_port()
    first = Node(url, env, port=port)
    second: Node | None = None
    base = first.base
    v = V4(base, app.sdkappid, app.key)
    v.ok(MULTI_IMPORT, {"Accounts": ["owner", "alice", "bob"]})
    gid = v.ok(
        CREATE,
        {
            "Owner_Account": "owner",
            "Type": "Public",
            "Name": "stream",
            "ApplyJoinOption": "FreeAccess",
        },
    )["GroupId"]
    acked: list[int] = []
    sending = True

    async def send_stream() -> None:
        """The app's backend sends a stream through the service's address, retrying
        while nothing answers there (between the two servers)."""
        async with httpx.AsyncClient(timeout=10) as http:
            i = 0
            while sending:
                try:
                    r = await http.post(
                        v.url(SEND_GROUP),
                        json={
                            "GroupId": gid,
                            "Random": i,
                            "From_Account": "owner",
                            "MsgBody": text(f"m{i}"),
                        },
                    )
                    data = r.json()
                except (httpx.HTTPError, ValueError):
                    await asyncio.sleep(0.05)
                    continue
                assert data["ErrorCode"] == 0, data
                acked.append(int(data["MsgSeq"]))
                i += 1
                await asyncio.sleep(0.005)

    async def scenario() -> None:
        nonlocal sending, second
        alice = await chat(base, app, "alice")
        await alice.join(gid)
        bob = await RawSocket.open(base, app, "bob")  # every frame as sent: no dedupe
        assert (await bob.request("join", group=gid))["code"] == 0
        sender = asyncio.create_task(send_stream())
        while len(acked) < 40:
            await asyncio.sleep(0.02)
        stopped_at = time.monotonic()
        first.server.proc.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(first.server.proc.wait, 30)
        assert status == 0, "".join(first.lines[-20:])
        assert time.monotonic() - stopped_at < 6 + 4  # IMCLOUD_SHUTDOWN_TIMEOUT, bounded
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == CLOSE_RESTART
        assert await bob.closed() == CLOSE_RESTART
        bob_before = [f["seq"] for f in bob.msgs(gid)]
        assert bob_before == list(range(1, len(bob_before) + 1))  # in order, no gap
        at_stop = len(acked)

        second = await asyncio.to_thread(Node, url, env, port)  # same address
        while len(acked) < at_stop + 40:
            await asyncio.sleep(0.02)
        sending = False
        await sender
        last = v.ok(INFO, {"GroupIdList": [gid]})["GroupInfo"][0]["NextMsgSeq"] - 1
        assert last >= max(acked)

        await alice.reconnect()  # the client library resumes from its last seen seq
        bob2 = await RawSocket.open(base, app, "bob", since={gid: bob_before[-1]})
        await bob2.wait_for(lambda f: f.get("op") == "msg" and f["seq"] == last)
        got: list[int] = []  # everything alice's client handed over, before and after
        while not got or got[-1] < last:
            frame = await alice.next(20)
            if frame.get("op") == "msg":
                got.append(frame["seq"])
        assert got == list(range(1, last + 1))
        bob_all = bob_before + [f["seq"] for f in bob2.msgs(gid)]
        assert bob_all == list(range(1, last + 1))  # the server sent each message once
        assert set(acked) <= set(bob_all)
        await alice.close()
        await bob2.close()

    try:
        run(scenario())
    finally:
        first.stop()
        if second is not None:
            second.stop()
    drained = [json.loads(line) for line in first.lines if "drained" in line]
    assert drained and drained[0]["sessions"] == 2, first.lines[-20:]
    problems = first.problems() + (second.problems() if second else [])
    assert not problems, "".join(problems[:40])


def stalled_socket(port: int, app: App, user: str) -> socket.socket:
    """A logged-in WebSocket whose client reads nothing after the handshake, with a
    tiny receive buffer: what the server sends it piles up on the server's side."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    query = urlencode({"sdkappid": app.sdkappid, "identifier": user, "usersig": app.sig(user)})
    s.sendall(
        (
            f"GET /v1/ws?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_sigterm_exits_in_bounded_time_when_a_client_reads_nothing(
    tmp_path: Path, sqlite_template: Path
) -> None:
    _, url = sqlite_db(tmp_path, sqlite_template)
    imcloud = Cli(url)
    imcloud("init", "--simulated-clock", START)
    shown = imcloud("app", "create", "stall")
    app = App(shown["sdkappid"], shown["name"], shown["secret_key"])
    node = Node(url, {**QUIET, "IMCLOUD_SHUTDOWN_TIMEOUT": "4", "IMCLOUD_WS_QUEUE": "100000"})
    v = V4(node.base, app.sdkappid, app.key)
    v.ok(MULTI_IMPORT, {"Accounts": ["owner", "alice", "zed"]})
    gid = v.ok(
        CREATE,
        {
            "Owner_Account": "owner",
            "Type": "Public",
            "Name": "big",
            "MemberList": [{"Member_Account": "alice"}, {"Member_Account": "zed"}],
        },
    )["GroupId"]
    zed = stalled_socket(node.server.port, app, "zed")
    count, big = 80, "x" * 65536  # 5 MiB: more than the kernel and asyncio buffer

    async def scenario() -> None:
        alice = await chat(node.base, app, "alice")
        for i in range(count):
            v.ok(
                SEND_GROUP,
                {"GroupId": gid, "Random": i, "From_Account": "owner", "MsgBody": text(big)},
            )
        while alice.last_seq.get(gid, 0) < count:
            await alice.next()
        stopped_at = time.monotonic()
        node.server.proc.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(node.server.proc.wait, 30)
        took = time.monotonic() - stopped_at
        assert status == 0, "".join(node.lines[-20:])
        assert took < 4 + 3, took  # IMCLOUD_SHUTDOWN_TIMEOUT, plus the process's exit
        await asyncio.wait_for(alice.closed.wait(), 10)
        assert alice.close_code == CLOSE_RESTART

    try:
        run(scenario())
    finally:
        zed.close()
        node.stop()
    [drained] = [json.loads(line) for line in node.lines if "drained" in line]
    assert (drained["sessions"], drained["flushed"], drained["cut_short"]) == (2, 1, 1)
