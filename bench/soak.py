"""Soak (issue 7): one node under mixed load for a long while; does it hold up, and does
its memory stay flat?

One `imcloud serve` process on PostgreSQL with Redis as its broker (the multi-node
configuration, with one node), a Pro app, and for `--duration` seconds (600) after a
`--warmup` (30):

  * `--clients` WebSocket clients (1,000), held by `--loaders` load processes (2), each
    a member of two of `--groups` ChatRooms (50) that it joined over its socket; together
    they send `--ws-rate` group messages per second (20: well under 40 per group) and
    receive every message of their groups, REST ones included;
  * REST calls at `--rest-rate` requests per second (20), from this process: group
    messages, one-to-one messages to the socket users, account imports, joins of the
    imported accounts (a new group when one is nearly full) and group profiles.

Messages carry their send time, so receivers measure send-to-receive latency. Printed
(and written to bench/out/soak.json): REST requests/s with p50/p99 latency, WebSocket
messages sent and delivered per second with p50/p99 send-to-receive latency, the count
of every error code seen (REST replies, WebSocket acks and closes, transport errors),
the server's RSS after the warm-up and at the end with the growth in % (goal: ≤ 10%),
its CPU, and the sockets it holds. The rate limits (60007 per app on REST, 10023 per
group) are counted like any other code; the default rates stay below them.

    .venv/bin/python bench/soak.py [--duration 600] [--clients 1000] [--rest-rate 20]
        [--ws-rate 20] [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/0] [--keep]

A fresh database (imcloud_soak_PID) is created on the PostgreSQL server and dropped at
the end (kept with --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import free_port, raise_nofile, rss_kib, wait_http

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GROUPS_PER_CLIENT = 2
REST_GROUP_FILL = 190  # of Pro's 200 members: then the next REST group


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 1)


def text_with_time() -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": f"t:{time.time():.6f}"}}]


def sent_at(frame: dict[str, Any]) -> float | None:
    try:
        text = frame["body"][0]["MsgContent"]["Text"]
    except (KeyError, IndexError, TypeError):
        return None
    return float(text[2:]) if isinstance(text, str) and text.startswith("t:") else None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_sockets(pid: int) -> int:
    n = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            n += os.readlink(fd).startswith("socket:")
    return n


# ---------------------------------------------------------------- load processes


def loader(
    urls: list[tuple[str, list[str]]],
    rate: float,
    ready: Any,
    go: Any,
    measure_from: Any,
    stop: Any,
    close: Any,
    out: Any,
) -> None:
    """Hold the sockets, join their groups, send `rate` group messages per second and
    receive everything; report counts and latencies of the measured window."""
    raise_nofile()
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    stats: dict[str, Any] = {
        "sent": 0,
        "acked": 0,
        "delivered": 0,
        "c2c": 0,
        "ack_codes": Counter(),
        "closes": Counter(),
        "connect_errors": 0,
        "latencies": [],
    }
    ids = itertools.count(1)

    class Client:
        def __init__(self, ws: Any, groups: list[str]):
            self.ws = ws
            self.groups = groups
            self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
            self.open = True

        async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
            rid = next(ids)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.pending[rid] = fut
            await self.ws.send(orjson.dumps({**frame, "id": rid}).decode())
            return await fut

        async def read(self) -> None:
            try:
                async for raw in self.ws:
                    frame = orjson.loads(raw)
                    op = frame.get("op")
                    if op in ("msg", "c2c"):
                        now = time.time()
                        if now >= measure_from.value:
                            stats["delivered" if op == "msg" else "c2c"] += 1
                            t = sent_at(frame)
                            if t is not None and t >= measure_from.value:
                                stats["latencies"].append(now - t)
                    elif op == "ack":
                        fut = self.pending.pop(frame.get("id"), None)
                        if fut is not None and not fut.done():
                            fut.set_result(frame)
            except ConnectionClosed as e:
                stats["closes"][str(e.rcvd.code if e.rcvd else "no close frame")] += 1
            finally:
                self.open = False
                for fut in self.pending.values():
                    if not fut.done():
                        fut.set_result({"code": "closed"})

    async def one(url: str, groups: list[str]) -> Client | None:
        try:
            ws = await connect(url, compression=None, max_size=2**20, open_timeout=120)
            login = orjson.loads(await ws.recv())
        except Exception:
            stats["connect_errors"] += 1
            return None
        if login.get("op") != "login":
            stats["closes"][f"login {login.get('code')}"] += 1
            return None
        c = Client(ws, groups)
        asyncio.get_running_loop().create_task(c.read())
        for g in groups:
            ack = await c.request({"op": "join", "group": g})
            if ack.get("code") != 0:
                stats["ack_codes"][str(ack.get("code"))] += 1
        return c

    async def send(c: Client) -> None:
        group = random.choice(c.groups)
        measured = time.time() >= measure_from.value
        try:
            ack = await c.request(
                {
                    "op": "send_group",
                    "group": group,
                    "random": random.randrange(2**32),
                    "body": text_with_time(),
                }
            )
        except ConnectionClosed:
            ack = {"code": "closed"}
        if measured:
            stats["sent"] += 1
            code = ack.get("code")
            if code == 0:
                stats["acked"] += 1
            else:
                stats["ack_codes"][str(code)] += 1

    async def main() -> None:
        clients: list[Client] = []
        for i in range(0, len(urls), 100):  # connect in waves
            got = await asyncio.gather(*(one(u, g) for u, g in urls[i : i + 100]))
            clients += [c for c in got if c is not None]
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.05)
        tasks: set[asyncio.Task[None]] = set()
        tick = 1 / rate if rate > 0 else None
        next_at = time.monotonic()
        while not stop.is_set():
            if tick is None:
                await asyncio.sleep(0.1)
                continue
            live = [c for c in clients if c.open]
            if live:
                task = asyncio.get_running_loop().create_task(send(random.choice(live)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(3)  # deliveries in flight
        connected = sum(1 for c in clients if c.open)
        lat = stats.pop("latencies")
        out.put(
            {
                **stats,
                "ack_codes": dict(stats["ack_codes"]),
                "closes": dict(stats["closes"]),
                "connected": connected,
                "clients": len(urls),
                "latencies": lat,
            }
        )
        while not close.is_set():
            await asyncio.sleep(0.1)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)

    asyncio.run(main())


# ---------------------------------------------------------------- REST load


class Rest:
    """REST calls at a bounded rate, as the app administrator."""

    def __init__(
        self,
        base: str,
        sdkappid: int,
        sig: str,
        ws_users: list[str],
        ws_groups: list[str],
        measure_from: float,
    ):
        self.base = base
        self.query = f"sdkappid={sdkappid}&identifier=administrator&usersig={sig}&contenttype=json"
        self.ws_users = ws_users
        self.ws_groups = ws_groups
        self.measure_from = measure_from
        self.latencies: list[float] = []
        self.codes: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self.requests = 0
        self.imported: list[str] = []
        self.accounts = itertools.count(1)
        self.rest_group = ""
        self.rest_members = 0
        self.groups_made = itertools.count(1)
        self.http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64))

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        t0 = time.time()
        try:
            r = await self.http.post(
                f"{self.base}/v4/{path}?{self.query}&random={random.randrange(2**32)}", json=body
            )
        except httpx.HTTPError as e:
            self.codes[f"transport {type(e).__name__}"] += 1
            return None
        if t0 >= self.measure_from:
            self.requests += 1
            self.commands[path.split("/")[1]] += 1
            self.latencies.append(time.time() - t0)
        if r.status_code != 200:
            self.codes[f"http {r.status_code}"] += 1
            return None
        data: dict[str, Any] = r.json()
        if data.get("ErrorCode") != 0:
            self.codes[str(data.get("ErrorCode"))] += 1
        return data

    async def new_rest_group(self) -> None:
        gid = f"rest{next(self.groups_made)}"
        reply = await self.call(
            "group_open_http_svc/create_group",
            {"Type": "Public", "Name": gid, "GroupId": gid, "ApplyJoinOption": "FreeAccess"},
        )
        if reply and reply.get("ErrorCode") == 0:
            self.rest_group, self.rest_members = gid, 0

    async def one(self) -> None:
        r = random.random()
        if r < 0.30:
            await self.call(
                "group_open_http_svc/send_group_msg",
                {
                    "GroupId": random.choice(self.ws_groups),
                    "Random": random.randrange(2**32),
                    "MsgBody": text_with_time(),
                },
            )
        elif r < 0.40:
            await self.call(
                "openim/sendmsg",
                {
                    "To_Account": random.choice(self.ws_users),
                    "MsgRandom": random.randrange(2**32),
                    "MsgBody": text_with_time(),
                },
            )
        elif r < 0.55:
            ids = [f"r{next(self.accounts)}" for _ in range(5)]
            reply = await self.call("im_open_login_svc/multiaccount_import", {"Accounts": ids})
            if reply and reply.get("ErrorCode") == 0:
                self.imported += ids
        elif r < 0.75 and self.imported:
            if not self.rest_group or self.rest_members >= REST_GROUP_FILL:
                await self.new_rest_group()
                return
            users = random.sample(self.imported, min(3, len(self.imported)))
            self.rest_members += len(users)  # at most: some may be members already
            await self.call(
                "group_open_http_svc/add_group_member",
                {"GroupId": self.rest_group, "MemberList": [{"Member_Account": u} for u in users]},
            )
        else:
            groups = random.sample(self.ws_groups, 3)
            await self.call("group_open_http_svc/get_group_info", {"GroupIdList": groups})

    async def run(self, rate: float, until: float) -> None:
        """`rate` requests per second on a fixed schedule (not one after another), at
        most 64 in flight: a slow server makes requests queue here, not stop."""
        tasks: set[asyncio.Task[None]] = set()
        room = asyncio.Semaphore(64)

        async def guarded() -> None:
            async with room:
                await self.one()

        next_at = time.monotonic()
        while time.time() < until:
            task = asyncio.create_task(guarded())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)
        await self.http.aclose()


# ---------------------------------------------------------------- the run


async def pg_admin(base: str, statement: str) -> None:
    conn = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def cli(env: dict[str, str], *args: str) -> Any:
    r = subprocess.run(
        [str(BIN / "imcloud"), *args, "--json"], env=env, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise SystemExit(f"imcloud {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return json.loads(r.stdout)


def setup(
    env: dict[str, str], base: str, clients: int, groups: int
) -> tuple[int, str, str, list[str], list[str]]:
    """The app, the socket users and their groups (through the v4 API)."""
    from imcloud.im.usersig import generate

    cli(env, "init")
    app = cli(env, "app", "create", "soak")
    sdkappid, key = app["sdkappid"], app["secret_key"]
    cli(env, "app", "upgrade", str(sdkappid), "--edition", "pro")  # no Trial caps
    sig = generate(sdkappid, key, "administrator", 7 * 86400)
    http = httpx.Client(timeout=60)

    def call(path: str, body: dict[str, Any]) -> None:
        r = http.post(
            f"{base}/v4/{path}?sdkappid={sdkappid}&identifier=administrator"
            f"&usersig={sig}&random=1&contenttype=json",
            json=body,
        ).json()
        if r["ErrorCode"] != 0:
            raise SystemExit(f"set-up {path}: {r}")

    users = [f"w{i}" for i in range(clients)]
    for i in range(0, clients, 100):
        call("im_open_login_svc/multiaccount_import", {"Accounts": users[i : i + 100]})
    gids = [f"ws{i}" for i in range(groups)]
    for g in gids:
        call("group_open_http_svc/create_group", {"Type": "ChatRoom", "Name": g, "GroupId": g})
    http.close()
    return sdkappid, key, sig, users, gids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--rest-rate", type=float, default=20, help="REST requests/s")
    parser.add_argument(
        "--ws-rate",
        type=float,
        default=20,
        help="group messages/s sent over the sockets, all clients together",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "IMCLOUD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--redis", default=os.environ.get("IMCLOUD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    if args.ws_rate / args.groups >= 40:
        raise SystemExit("--ws-rate / --groups must stay under 40 messages/s per group")
    raise_nofile()
    from imcloud.im.usersig import generate

    name = f"imcloud_soak_{os.getpid()}"
    db_url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    asyncio.run(pg_admin(args.postgres, f"CREATE DATABASE {name}"))
    env = {**os.environ, "IMCLOUD_DATABASE_URL": db_url, "IMCLOUD_BROKER_URL": args.redis}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="soak-server-", suffix=".log")[1])
    server: subprocess.Popen[bytes] | None = None
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    close = ctx.Event()
    try:
        cli(env, "init")  # the schema, before the server starts
        with log.open("wb") as err:
            server = subprocess.Popen(
                [str(BIN / "imcloud"), "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_http(f"{base}/healthz")
        print(
            f"[soak] setting up {args.clients} users, {args.groups} groups",
            file=sys.stderr,
            flush=True,
        )
        sdkappid, key, sig, users, gids = setup(env, base, args.clients, args.groups)
        plan = [
            (
                f"ws://127.0.0.1:{port}/v1/ws?sdkappid={sdkappid}&identifier={u}"
                f"&usersig={generate(sdkappid, key, u, 7 * 86400)}",
                [gids[i % args.groups], gids[(i * 7 + 3) % args.groups]][:GROUPS_PER_CLIENT],
            )
            for i, u in enumerate(users)
        ]
        ready = [ctx.Event() for _ in range(args.loaders)]
        go, stop = ctx.Event(), ctx.Event()
        measure_from = ctx.Value("d", float("inf"))
        out = ctx.Queue()
        for n in range(args.loaders):
            p = ctx.Process(
                target=loader,
                args=(
                    plan[n :: args.loaders],
                    args.ws_rate / args.loaders,
                    ready[n],
                    go,
                    measure_from,
                    stop,
                    close,
                    out,
                ),
            )
            p.start()
            procs.append(p)
        t0 = time.monotonic()
        for r in ready:
            if not r.wait(900):
                raise SystemExit("the load processes did not connect")
        print(
            f"[soak] {args.clients} sockets in {time.monotonic() - t0:.1f} s; warm-up "
            f"{args.warmup:.0f} s, then {args.duration:.0f} s measured",
            file=sys.stderr,
            flush=True,
        )
        start = time.time() + args.warmup
        end = start + args.duration
        measure_from.value = start
        go.set()
        rest = Rest(base, sdkappid, sig, users, gids, start)
        samples: list[tuple[float, int]] = []
        cpu: dict[str, float] = {}
        sockets: dict[str, int] = {}

        async def watch() -> None:
            while time.time() < start:
                await asyncio.sleep(0.2)
            cpu["start"] = cpu_seconds(server.pid)
            sockets["start"] = open_sockets(server.pid)
            while time.time() < end:
                samples.append((round(time.time() - start, 1), rss_kib(server.pid)))
                if len(samples) % 6 == 1:
                    print(
                        f"[soak] t={samples[-1][0]:.0f}s rss={samples[-1][1] / 1024:.1f} MiB "
                        f"rest={rest.requests}",
                        file=sys.stderr,
                        flush=True,
                    )
                await asyncio.sleep(min(10.0, max(0.5, end - time.time())))
            samples.append((round(time.time() - start, 1), rss_kib(server.pid)))
            cpu["end"] = cpu_seconds(server.pid)

        async def drive() -> None:
            await asyncio.gather(rest.run(args.rest_rate, end), watch())

        asyncio.run(drive())
        stop.set()
        loads = [out.get(timeout=600) for _ in range(args.loaders)]
        sockets["end"] = open_sockets(server.pid)
        rss_end = rss_kib(server.pid)
        close.set()
        for p in procs:
            p.join(60)
    finally:
        close.set()
        for p in procs:
            if p.is_alive():
                p.kill()
        if server is not None:
            server.terminate()
            server.wait(30)
        if not args.keep:
            asyncio.run(pg_admin(args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    seconds = args.duration
    lat = [x for part in loads for x in part["latencies"]]
    sent = sum(p["sent"] for p in loads)
    delivered = sum(p["delivered"] for p in loads)
    ws_codes: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    for p in loads:
        ws_codes.update(p["ack_codes"])
        closes.update(p["closes"])
    every: Counter[str] = Counter()
    every.update({f"rest {k}": v for k, v in rest.codes.items()})
    every.update({f"ws ack {k}": v for k, v in ws_codes.items()})
    every.update({f"ws close {k}": v for k, v in closes.items()})
    connect_errors = sum(p["connect_errors"] for p in loads)
    if connect_errors:
        every["ws connect failed"] = connect_errors
    connected = sum(p["connected"] for p in loads)
    rss_start = samples[0][1]
    growth = round((rss_end - rss_start) / rss_start * 100, 1)
    logged = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "Traceback" in line or "ERROR" in line
    ]
    report = {
        "benchmark": "soak",
        "duration_s": seconds,
        "warmup_s": args.warmup,
        "settings": {
            "clients": args.clients,
            "groups": args.groups,
            "loaders": args.loaders,
            "rest_rate": args.rest_rate,
            "ws_rate": args.ws_rate,
            "database": "postgresql",
            "broker": "redis",
        },
        "rest": {
            "requests": rest.requests,
            "per_second": round(rest.requests / seconds, 1),
            "p50_ms": percentile(rest.latencies, 0.5),
            "p99_ms": percentile(rest.latencies, 0.99),
            "by_command": dict(rest.commands),
        },
        "ws": {
            "sent": sent,
            "acked": sum(p["acked"] for p in loads),
            "sent_per_second": round(sent / seconds, 1),
            "delivered": delivered,
            "delivered_per_second": round(delivered / seconds, 1),
            "c2c_delivered": sum(p["c2c"] for p in loads),
            "send_to_receive_p50_ms": percentile(lat, 0.5),
            "send_to_receive_p99_ms": percentile(lat, 0.99),
            "latency_samples": len(lat),
        },
        "error_codes": dict(sorted(every.items())),
        "server": {
            "rss_start_mib": round(rss_start / 1024, 1),
            "rss_end_mib": round(rss_end / 1024, 1),
            "rss_growth_pct": growth,
            "rss_max_mib": round(max(kib for _, kib in samples) / 1024, 1),
            "rss_mib_by_second": {f"{t:.0f}": round(kib / 1024, 1) for t, kib in samples},
            "cpu_pct": round((cpu["end"] - cpu["start"]) / seconds * 100, 1),
            "log_errors": len(logged),
        },
        "sockets": {
            "clients": args.clients,
            "connected_at_end": connected,
            "server_sockets_start": sockets["start"],
            "server_sockets_end": sockets["end"],
        },
        "goals": {"rss_growth_pct": "<= 10"},
        "ok": growth <= 10 and not logged and connected == args.clients,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
    }
    bench_out = ROOT / "bench" / "out"
    bench_out.mkdir(parents=True, exist_ok=True)
    (bench_out / "soak.json").write_text(json.dumps(report, indent=2))
    if logged:
        print("[soak] server log:\n" + "\n".join(logged[:20]), file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
