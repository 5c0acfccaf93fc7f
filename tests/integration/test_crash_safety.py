"""Crash safety (issue 7): `imcloud serve` SIGKILLed at random moments under a storm of v4
calls and plan changes, restarted, and the database judged after every restart — on
SQLite and PostgreSQL.

Each round starts a real server on the database (a fresh `imcloud serve` process,
spawned during the round before, waiting with its imports done: see `warm`), runs a
storm of concurrent v4 calls (account imports, group creation, joins, group and
one-to-one messages, cap changes) for a random 0.2-1.0 s while a plan change runs
through the real `imcloud` CLI (on a thread) and others through the console JSON API,
then `kill -9`s the server with requests in flight. The rounds
(IMCLOUD_TEST_CRASH_LOOPS, default 20) move the simulated clock over a month's end (and
a bill day), within Trial's 7 days of history, so retention deletes no message. After every restart:

- every acknowledged write (ErrorCode 0 received; exit 0 of the CLI; 200 of the
  console) is in the database: accounts, groups, memberships, group messages under the
  MsgSeq replied, one-to-one messages under the MsgKey replied, plan events;
- no limit is exceeded: on apps that stay on Trial, the Trial limits themselves
  (accounts, groups, AVChatRooms, groups per user, group members); on apps whose plan
  changes, the highest limit their history ever gave; every group within the cap fixed
  at its creation; and the stored counters equal the real row counts;
- every group's messages are numbered 1..last MsgSeq: no gap, no duplicate (a send
  killed in flight, or refused after its MsgSeq was taken, gives the MsgSeq back);
- the plan history replays to the `apps` row and obeys R4 (the checks of
  test_lifecycle_properties.py).

The bill run's crash test is test_crash_billing.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import TLSSigAPIv2

from imcloud import plans
from imcloud.catalog import ITEM_KEYS, load
from imcloud.cli import cli
from imcloud.im import filtering
from imcloud.plans import AppPlan
from imcloud.services import groups, tenant
from imcloud.services import im_accounts as im_accounts_service
from imcloud.store.db import Database
from imcloud.store.tables import apps as apps_table
from imcloud.store.tables import (
    im_accounts,
    im_app_counters,
    im_c2c_messages,
    im_group_messages,
    im_groups,
    im_members,
    plan_events,
)
from tests.conftest import Cli, run
from tests.integration.test_lifecycle_properties import check_R4, check_replay
from tests.integration.test_serve import free_port

LOOPS = int(os.environ.get("IMCLOUD_TEST_CRASH_LOOPS", "20"))
CATALOG = load()
AV = "AVChatRoom"
INTERNAL = 10002
START = datetime(2019, 2, 25, tzinfo=UTC)
SPAN = timedelta(days=6, hours=12)  # crosses 2019-03-03 (bill day), stays within 7 days
STORM = (0.2, 1.0)  # seconds of storm before the kill
WORKERS = 12
CROWD = 19  # the first users of a Trial app: in 49 of their 50 groups
TRIAL_ROUNDS = 4  # rounds per Trial app: each one is driven to its limits, then the next

LOGIN, GROUP = "im_open_login_svc", "group_open_http_svc"
BLOCKED = next(
    w
    for w in (Path(filtering.__file__).with_name("blocked_words.txt").read_text().splitlines())
    if w.strip() and not w.startswith("#")
)


def warm(
    args: list[str],
    *,
    prelude: str = "",
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """`imcloud ARGS` in a new process that does its imports, then waits for a line on
    stdin before it runs the command (`go`): a loop of kills pays no interpreter
    start-up between a kill and the restart. Nothing before the line opens the
    database."""
    code = (
        "import sys\n" + prelude + "\nfrom imcloud.cli import main\n"
        "sys.stdin.readline()\nsys.argv[0] = 'imcloud'\nsys.exit(main())"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=stdout, stderr=stderr
    )


def go(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    proc.stdin = None  # so that communicate() leaves it alone


class Killable:
    """`imcloud serve` on a fresh port, started ahead (see `warm`), its stderr in a
    file; ended by SIGKILL."""

    def __init__(self, db_url: str, log: Path):
        self.db_url = db_url
        self.log = log
        self._spawn()

    def _spawn(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        with self.log.open("wb") as err:
            self.proc = warm(
                ["serve", "--port", str(self.port), "--db", self.db_url],
                prelude="import imcloud.api.app, imcloud.api.fastpath, uvicorn",
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def start(self) -> Killable:
        for attempt in itertools.count(1):
            go(self.proc)
            if self._up():
                return self
            self.proc.kill()
            self.proc.wait()
            text = self.log.read_text(errors="replace")
            if "address already in use" not in text or attempt == 3:
                raise AssertionError(f"server did not start:\n{text}")
            self._spawn()
        raise AssertionError("unreachable")

    def _up(self) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                time.sleep(0.01)
        return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)

    def tracebacks(self) -> list[str]:
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "Traceback" in line or "ERROR" in line]


@dataclass
class Subject:
    """One app under the storm and every write of it that was acknowledged."""

    sdkappid: int
    name: str
    role: str  # "trial": stays on Trial; "cli" / "console": its plan changes that way
    sig: str
    users: list[str] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # group -> type
    members: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    group_msgs: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)
    c2c: dict[int, tuple[str, str, int]] = field(default_factory=dict)
    plan_acks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # actor, view
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.ids)}"


# ------------------------------------------------------------------ plan changes


def plan_change(rng: random.Random, view: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A plan change that may well be allowed from `view` (R4 refuses some; fine)."""
    edition = view["service_version"].lower()
    if edition == "trial":
        target = rng.choice(["pro", "pro", "flagship"])
        items: dict[str, Any] = {}
        if target == "pro" and rng.random() < 0.5:
            items["group_member_limit"] = rng.choice([300, 1000])
        return "upgrade", target, items
    r = rng.random()
    if r < 0.15:
        return "downgrade", None, {}
    if r < 0.3:
        return "configure", "flagship" if edition == "pro" else "pro", {}
    key = rng.choice(
        [
            "group_member_limit",
            "groups_per_user",
            "content_filtering",
            *(["unlimited_av_rooms"] if edition == "pro" else []),
        ]
    )
    offer = CATALOG.offer(key, edition)
    if isinstance(offer.free, bool):
        value: Any = not view["items"][key]
    else:
        value = rng.choice(
            [
                v
                for v in (offer.free, offer.max, (offer.free + (offer.max or 0)) // 2)
                if v is not None and v != view["items"][key]
            ]
        )
    return "configure", None, {key: value}


def cli_args(kind: str, edition: str | None, items: dict[str, Any]) -> list[str]:
    args: list[str] = []
    if edition:
        args += ["--edition", edition]
    for key, value in items.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args += [flag] if kind == "upgrade" else [flag, "on" if value else "off"]
        else:
            args += [flag, str(value)]
    return args


def cli_change(imcloud: Cli, app: Subject, n: int, rng: random.Random, problems: list[str]) -> None:
    """One `imcloud app show` and `imcloud app upgrade|configure|downgrade` (the real
    command, run in-process on a thread while the storm goes on); the actor is unique,
    so the event it says it wrote can be found."""
    view = imcloud("app", "show", str(app.sdkappid))
    kind, edition, items = plan_change(rng, view)
    result = imcloud.runner.invoke(
        cli,
        [
            "app",
            kind,
            str(app.sdkappid),
            *cli_args(kind, edition, items),
            "--db",
            imcloud.db_url,
            "--json",
        ],
        env={"LOGNAME": f"crash{n}"},
    )
    if result.exit_code == 0:
        app.plan_acks.append((f"cli:crash{n}", json.loads(result.stdout)))
    elif result.exit_code != 1 or "rule" not in result.stdout:
        problems.append(f"plan change through the CLI failed: {result.output}")


# ------------------------------------------------------------------ the storm


class Storm:
    """Concurrent v4 calls (and console plan changes) until the server is killed."""

    def __init__(
        self,
        base: str,
        subjects: list[Subject],
        weights: list[float],
        console: tuple[Subject, httpx.Cookies, str],
        cli: tuple[Cli, Subject],
        rng: random.Random,
        codes: Counter[int],
        problems: list[str],
        round_no: int,
    ):
        self.base = base
        self.imcloud, self.cli_app = cli
        self.subjects = subjects
        self.weights = weights
        self.console_app, self.cookies, self.csrf = console
        self.rng = rng
        self.codes = codes
        self.problems = problems
        self.round = round_no
        self.killed = False
        self.http: httpx.AsyncClient

    async def run(self, seconds: float, kill: Any) -> None:
        limits = httpx.Limits(max_connections=WORKERS + 2)
        async with httpx.AsyncClient(timeout=60, limits=limits, cookies=self.cookies) as http:
            self.http = http
            tasks = [asyncio.create_task(self._worker()) for _ in range(WORKERS)]
            tasks.append(asyncio.create_task(self._console()))
            tasks.append(asyncio.create_task(self._cli(self.rng.uniform(0, seconds))))
            await asyncio.sleep(seconds)
            kill()
            self.killed = True
            await asyncio.gather(*tasks)

    async def _worker(self) -> None:
        ops = [
            (self._import, 2),
            (self._create, 1.5),
            (self._join, 3),
            (self._send, 4),
            (self._c2c, 2),
            (self._modify, 0.3),
        ]
        fns, weights = zip(*ops, strict=True)
        while not self.killed:
            app = self.rng.choices(self.subjects, self.weights)[0]
            op = self.rng.choices(fns, weights)[0]
            try:
                await op(app)
            except httpx.TransportError:
                return  # the server is gone: what was in flight is neither ack nor refusal

    async def v4(self, app: Subject, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = (
            f"{self.base}/v4/{path}?sdkappid={app.sdkappid}&identifier=administrator"
            f"&usersig={app.sig}&random={self.rng.randrange(2**32)}&contenttype=json"
        )
        r = await self.http.post(url, json=body)
        if r.status_code != 200:
            self.problems.append(f"{path}: HTTP {r.status_code} {r.text[:200]}")
            return {"ErrorCode": -1}
        data: dict[str, Any] = r.json()
        self.codes[data["ErrorCode"]] += 1
        if data["ErrorCode"] == INTERNAL:
            self.problems.append(f"{path}: {data}")
        return data

    def _some_users(self, app: Subject, k: int) -> list[str]:
        return self.rng.sample(app.users, min(k, len(app.users)))

    async def _import(self, app: Subject) -> None:
        ids = [app.next_id(f"u{self.round}x") for _ in range(self.rng.randint(1, 8))]
        if len(ids) == 1:
            reply = await self.v4(app, f"{LOGIN}/account_import", {"UserID": ids[0]})
        else:
            reply = await self.v4(app, f"{LOGIN}/multiaccount_import", {"Accounts": ids})
        if reply["ErrorCode"] == 0:
            app.users.extend(ids)

    async def _create(self, app: Subject) -> None:
        kind = self.rng.choice(["Public", "Private", "ChatRoom", "Public", AV])
        body: dict[str, Any] = {"Type": kind, "Name": "storm"}
        if self.rng.random() < 0.5:
            body["GroupId"] = app.next_id(f"g{self.round}x")
        owner = self._some_users(app, 1) if self.rng.random() < 0.7 else []
        if owner:
            body["Owner_Account"] = owner[0]
        joining: list[str] = []
        if kind != AV:
            joining = [u for u in self._some_users(app, self.rng.randint(0, 3)) if u not in owner]
            body["MemberList"] = [{"Member_Account": u} for u in joining]
            cap = self.rng.choice([None, None, 3, 5, 8, 20, 25])
            if cap is not None:
                body["MaxMemberCount"] = cap
        reply = await self.v4(app, f"{GROUP}/create_group", body)
        if reply["ErrorCode"] == 0:
            gid = reply["GroupId"]
            if body.get("GroupId", gid) != gid or gid in app.groups:
                self.problems.append(f"create_group replied {gid} for {body}")
            app.groups[gid] = kind
            if kind != AV:
                app.members[gid].update(owner + joining)

    def _some_group(self, app: Subject, av: bool = True) -> str | None:
        ids = [g for g, k in app.groups.items() if av or k != AV]
        return self.rng.choice(ids) if ids else None

    async def _join(self, app: Subject) -> None:
        gid = self._some_group(app, av=False)
        crowd = self.rng.random() < 0.5  # the first users: those nearest their limit
        users = self.rng.sample(
            app.users[:CROWD] if crowd else app.users, min(self.rng.randint(1, 3), len(app.users))
        )
        if gid is None or not users:
            return
        reply = await self.v4(
            app,
            f"{GROUP}/add_group_member",
            {"GroupId": gid, "MemberList": [{"Member_Account": u} for u in users]},
        )
        if reply["ErrorCode"] == 0:
            for m in reply["MemberList"]:
                if m["Result"] == 0:  # every one of them was acknowledged as imported
                    self.problems.append(f"add_group_member: {m} lost its account")
                else:
                    app.members[gid].add(m["Member_Account"])

    async def _send(self, app: Subject) -> None:
        gid = self._some_group(app)
        if gid is None:
            return
        # some sends are refused after their MsgSeq was taken (a sender who is not a
        # member: 10007; a blocked word while filtering is on: 80001): no hole either
        text = BLOCKED if self.rng.random() < 0.1 else "storm"
        body: dict[str, Any] = {
            "GroupId": gid,
            "Random": self.rng.randrange(2**32),
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": text}}],
        }
        sender = "administrator"
        r = self.rng.random()
        if app.members[gid] and r < 0.4:
            sender = body["From_Account"] = self.rng.choice(sorted(app.members[gid]))
        elif app.users and r < 0.55:
            sender = body["From_Account"] = self.rng.choice(app.users)
        reply = await self.v4(app, f"{GROUP}/send_group_msg", body)
        if reply["ErrorCode"] == 0:
            key = (gid, int(reply["MsgSeq"]))
            if key in app.group_msgs:
                self.problems.append(f"MsgSeq {key} acknowledged twice")
            app.group_msgs[key] = (body["Random"], sender)

    async def _c2c(self, app: Subject) -> None:
        if not app.users:
            return
        to = self.rng.choice(app.users)
        sender = self.rng.choice([*self._some_users(app, 1), "administrator"])
        body: dict[str, Any] = {
            "To_Account": to,
            "MsgRandom": self.rng.randrange(2**32),
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}],
        }
        if sender != "administrator":
            body["From_Account"] = sender
        reply = await self.v4(app, "openim/sendmsg", body)
        if reply["ErrorCode"] == 0:
            row_id = int(reply["MsgKey"].split("_")[0])
            app.c2c[row_id] = (sender, to, body["MsgRandom"])

    async def _modify(self, app: Subject) -> None:
        gid = self._some_group(app, av=False)
        if gid is not None:
            await self.v4(
                app,
                f"{GROUP}/modify_group_base_info",
                {"GroupId": gid, "MaxMemberNum": self.rng.randint(1, 25)},
            )

    async def _cli(self, after: float) -> None:
        await asyncio.sleep(after)
        await asyncio.to_thread(
            cli_change,
            self.imcloud,
            self.cli_app,
            self.round,
            random.Random(self.rng.random()),
            self.problems,
        )

    async def _console(self) -> None:
        """Plan changes of one app through the console JSON API, one at a time."""
        app = self.console_app
        url = f"{self.base}/console/api/apps/{app.sdkappid}"
        headers = {"X-CSRF-Token": self.csrf}
        try:
            while not self.killed:
                r = await self.http.get(url)
                assert r.status_code == 200, r.text
                kind, edition, items = plan_change(self.rng, r.json())
                body: dict[str, Any] = {**items, **({"edition": edition} if edition else {})}
                r = await self.http.post(f"{url}/{kind}", json=body, headers=headers)
                if r.status_code == 200:
                    app.plan_acks.append(("console:op", r.json()))
                elif r.status_code != 409:
                    self.problems.append(f"console {kind} {body}: {r.status_code} {r.text}")
                await asyncio.sleep(self.rng.uniform(0.05, 0.2))
        except httpx.TransportError:
            return


# ------------------------------------------------------------------ the checks


def limits_of(after: dict[str, Any]) -> dict[str, Any]:
    return plans.effective_limits(AppPlan.from_json(after), CATALOG)


def highest(history: list[Any], key: str) -> int | None:
    """The highest value of a limit over the app's history (None: unlimited once)."""
    values = [limits_of(e.after)[key] for e in history]
    return None if None in values else max(values)


async def check(db_url: str, subjects: list[Subject]) -> list[str]:
    """Everything the module docstring promises, read straight from the database."""
    db = Database(db_url)
    bad: list[str] = []
    try:
        async with db.read() as conn:
            for s in subjects:
                bad += await _check_app(conn, s)
    finally:
        await db.dispose()
    return bad


async def _check_app(conn: Any, s: Subject) -> list[str]:
    a = s.sdkappid
    bad: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            bad.append(f"app {a} ({s.role}): {what}")

    accounts = {
        r.user_id: r
        for r in await conn.execute(sa.select(im_accounts).where(im_accounts.c.sdkappid == a))
    }
    groups = {
        r.group_id: r
        for r in await conn.execute(sa.select(im_groups).where(im_groups.c.sdkappid == a))
    }
    members: dict[str, set[str]] = defaultdict(set)
    for r in await conn.execute(
        sa.select(im_members.c.group_id, im_members.c.user_id).where(im_members.c.sdkappid == a)
    ):
        members[r.group_id].add(r.user_id)
    seqs: dict[str, list[int]] = defaultdict(list)
    msgs = {}
    for r in await conn.execute(
        sa.select(
            im_group_messages.c.group_id,
            im_group_messages.c.msg_seq,
            im_group_messages.c.random,
            im_group_messages.c.from_account,
        )
        .where(im_group_messages.c.sdkappid == a)
        .order_by(im_group_messages.c.group_id, im_group_messages.c.msg_seq)
    ):
        seqs[r.group_id].append(int(r.msg_seq))
        msgs[(r.group_id, int(r.msg_seq))] = (int(r.random), r.from_account)
    c2c = {
        int(r.id): (r.from_account, r.to_account, int(r.random))
        for r in await conn.execute(
            sa.select(im_c2c_messages).where(im_c2c_messages.c.sdkappid == a)
        )
    }
    counters = (
        await conn.execute(sa.select(im_app_counters).where(im_app_counters.c.sdkappid == a))
    ).one()
    row = (await conn.execute(sa.select(apps_table).where(apps_table.c.sdkappid == a))).one()
    events = list(
        await conn.execute(
            sa.select(plan_events).where(plan_events.c.sdkappid == a).order_by(plan_events.c.seq)
        )
    )

    # every acknowledged write is there
    lost = [u for u in s.users if u not in accounts]
    expect(not lost, f"acknowledged accounts lost: {lost[:5]}")
    for gid, kind in s.groups.items():
        expect(gid in groups and groups[gid].type == kind, f"acknowledged group {gid} lost")
    for gid, users in s.members.items():
        expect(
            users <= members[gid],
            f"acknowledged members of {gid} lost: {sorted(users - members[gid])[:5]}",
        )
    for key, (rnd, sender) in s.group_msgs.items():
        expect(msgs.get(key) == (rnd, sender), f"acknowledged message {key} is {msgs.get(key)}")
    for row_id, sent in s.c2c.items():
        expect(c2c.get(row_id) == sent, f"acknowledged one-to-one message {row_id} lost")

    # no gap, no duplicate: MsgSeq 1..last of every group
    for gid, g in groups.items():
        expect(
            seqs[gid] == list(range(1, int(g.last_msg_seq) + 1)),
            f"group {gid}: MsgSeqs {seqs[gid][:10]}... for last {g.last_msg_seq}",
        )

    # the counters are the rows
    av = [g for g in groups.values() if g.type == AV]
    expect(counters.accounts == len(accounts), f"accounts {counters.accounts} != {len(accounts)}")
    expect(counters.groups == len(groups) - len(av), f"groups {counters.groups}")
    expect(counters.av_rooms == len(av), f"av_rooms {counters.av_rooms} != {len(av)}")
    if counters.day is not None:
        made = sum(1 for g in groups.values() if g.created_at.date() == counters.day)
        expect(counters.net_new_groups == made, f"net new groups {counters.net_new_groups}")
    joined: Counter[str] = Counter()
    for gid, users in members.items():
        g = groups[gid]
        expect(g.member_count == len(users), f"group {gid}: {g.member_count} != {len(users)}")
        expect(
            g.max_member_count is None or len(users) <= g.max_member_count,
            f"group {gid}: {len(users)} members, cap {g.max_member_count}",
        )
        if g.type != AV:
            joined.update(users)
    for user, acc in accounts.items():
        expect(
            acc.joined_groups == joined[user],
            f"{user}: joined_groups {acc.joined_groups} != {joined[user]}",
        )

    # no limit exceeded
    caps = {
        k: highest(events, k)
        for k in ("accounts", "groups", "av_rooms", "groups_per_user", "group_members")
    }
    if s.role == "trial":
        trial = CATALOG.edition("trial").limits
        expect(all(caps[k] == trial[k] for k in caps), f"a Trial app's limits {caps}")
    for key, n in (
        ("accounts", len(accounts)),
        ("groups", len(groups) - len(av)),
        ("av_rooms", len(av)),
        ("groups_per_user", max(joined.values(), default=0)),
    ):
        cap = caps[key]
        expect(cap is None or n <= cap, f"{key}: {n} above {cap}")
    member_cap = caps["group_members"]
    for gid, g in groups.items():
        if g.type != AV and member_cap is not None:
            expect(
                g.max_member_count is not None and g.max_member_count <= member_cap,
                f"group {gid}: cap {g.max_member_count} above {member_cap}",
            )

    # the plan history replays to the apps row; acknowledged changes are in it
    try:
        check_replay(row, events)
        check_R4(events)
    except AssertionError as e:
        bad.append(f"app {a}: plan history: {e!r}")
    by_actor: dict[str, list[Any]] = defaultdict(list)
    for e in events:
        by_actor[e.actor].append(e)
    console = iter(by_actor.get("console:op", []))
    for actor, view in s.plan_acks:
        if actor == "console:op":  # one at a time: the acknowledged ones, in order
            found = any(_same(e.after, view) for e in console)
        else:
            found = len(by_actor[actor]) == 1 and _same(by_actor[actor][0].after, view)
        expect(found, f"acknowledged plan change by {actor} lost: {view['items']}")
    return bad


def _same(after: dict[str, Any], view: dict[str, Any]) -> bool:
    return (
        after["edition"] == view["service_version"].lower()
        and after["status"] == view["status"]
        and after["items"] == {k: view["items"][k] for k in ITEM_KEYS}
    )


# ------------------------------------------------------------------ the test


async def near_limits(db_url: str, s: Subject) -> None:
    """Bring a Trial app a few writes short of each limit (through the services), so
    that every storm reaches them: 96 of 100 accounts, 98 of 100 groups, 9 of 10
    AVChatRooms, a crowd of 19 users in 49 of their 50 groups, those groups with 19 of
    their 20 members."""
    db = Database(db_url)
    try:
        async with db.write() as conn:
            t = await tenant.load(conn, s.sdkappid, CATALOG, UTC)
            s.users = [f"p{i}" for i in range(1, 97)]
            await im_accounts_service.import_accounts(
                conn, t, [im_accounts_service.NewAccount(u) for u in s.users]
            )
            crowd = s.users[:CROWD]
            for i in range(98 + 9):
                kind = "Public" if i < 98 else AV
                gid = await groups.create(
                    conn,
                    t,
                    groups.NewGroup(
                        type=kind,
                        name=f"pre{i}",
                        group_id=f"pre{i}",
                        members=[(u, "Member") for u in crowd] if i < 49 else [],
                    ),
                )
                s.groups[gid] = kind
                if i < 49:
                    s.members[gid].update(crowd)
    finally:
        await db.dispose()


def _subjects(imcloud: Cli, password: str) -> list[Subject]:
    imcloud("init", "--simulated-clock", START.isoformat())
    imcloud("console", "add-user", "op", "--password", password)

    def subject(name: str, role: str, *owner: str) -> Subject:
        app = imcloud("app", "create", name, *owner)
        sig = TLSSigAPIv2.TLSSigAPIv2(app["sdkappid"], app["secret_key"]).gen_sig(
            "administrator", 30 * 86400
        )
        return Subject(app["sdkappid"], name, role, str(sig))

    trials = [subject(f"trial{i}", "trial") for i in range(-(-LOOPS // TRIAL_ROUNDS))]
    for s in trials:
        run(near_limits(imcloud.db_url, s))
    return [*trials, subject("by-cli", "cli"), subject("by-console", "console", "--owner", "op")]


def test_acknowledged_writes_and_limits_survive_sigkill_of_the_server(
    imcloud: Cli, tmp_path: Path
) -> None:
    password = "crash-console-pw"
    subjects = _subjects(imcloud, password)
    by_cli, by_console = subjects[-2], subjects[-1]
    trials = subjects[:-2]
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    codes: Counter[int] = Counter()
    problems: list[str] = []
    cookies = httpx.Cookies()
    csrf = ""
    # two servers ahead: each has a round or two to do its imports before its turn
    servers = [Killable(imcloud.db_url, tmp_path / f"serve{i}.log") for i in range(2)]
    try:
        step = SPAN / LOOPS
        for n in range(LOOPS + 1):
            server = servers[n].start()
            bad = run(check(imcloud.db_url, subjects))
            assert not bad, (f"after restart {n} (seed {seed}):", bad[:20])
            if n == LOOPS:
                break
            if not csrf:
                r = httpx.post(
                    f"{server.base}/console/api/login",
                    json={"username": "op", "password": password},
                )
                assert r.status_code == 200, r.text
                cookies, csrf = r.cookies, r.json()["csrf_token"]
            imcloud("clock", "set", (START + step * (n + 1)).isoformat())
            if n + 2 <= LOOPS:
                servers.append(Killable(imcloud.db_url, tmp_path / f"serve{n + 2}.log"))
            trial = trials[n // TRIAL_ROUNDS]
            storm = Storm(
                server.base,
                [trial, by_cli, by_console],
                [2, 1, 1],
                (by_console, cookies, csrf),
                (imcloud, by_cli),
                rng,
                codes,
                problems,
                n,
            )
            run(storm.run(rng.uniform(*STORM), server.kill))
        bad = run(check(imcloud.db_url, subjects))
        servers[LOOPS].stop()
    finally:
        for srv in servers:
            if srv.proc.poll() is None:
                srv.kill()
    logged = [line for srv in servers for line in srv.tracebacks()]
    assert not problems and not bad and not logged, (seed, problems[:10], bad[:10], logged)

    # the storm did reach what it means to test: writes of every kind, and the limits
    acked = Counter(codes)
    assert all(s.users and s.groups and s.group_msgs and s.c2c for s in subjects[-3:]), acked
    # Trial's accounts and groups, a group's cap, groups per user, a send refused after
    # its MsgSeq was taken
    for code in (70398, 10058, 10014, 10037, 10007):
        assert acked[code] > 0, acked
    assert by_cli.plan_acks and by_console.plan_acks, "no plan change made"
