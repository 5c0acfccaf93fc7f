"""R6 across nodes: how long after `imcloud app disable` are the app's sockets closed?

Two `imcloud serve` nodes share PostgreSQL and Redis (IMCLOUD_BROKER_URL); N clients
of one app are connected to node B; the CLI disables the app. Measured per run: the
time from the commit of the disable (made as the CLI makes it: `services.apps.apply`,
then the broker notice) to the last socket closed (code 4003), once with the notice on
Redis and once without it (the nodes then find out by polling the apps table).
Goal (SPEC R6 / issue 5): within 1 s.

    .venv/bin/python bench/disable.py [--clients 200] [--runs 5]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect

from imcloud import events
from imcloud.catalog import load
from imcloud.client import AdminClient, user_sig
from imcloud.plans import Disable
from imcloud.realtime.broker import broadcast
from imcloud.services import apps
from imcloud.store.db import Database

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import NO_RATE_LIMITS, free_port, raise_nofile, wait_http

BIN = Path(sys.executable).parent


async def one_run(db: str, broker: str, clients: int, notice: bool) -> float:
    env = {**os.environ, **NO_RATE_LIMITS, "IMCLOUD_DATABASE_URL": db, "IMCLOUD_BROKER_URL": broker,
           "IMCLOUD_BILL_CHECK_SECONDS": "86400"}
    cli = [str(BIN / "imcloud")]
    app = json.loads(subprocess.run([*cli, "app", "create", f"d{uuid.uuid4().hex[:6]}",
                                     "--json"], env=env, check=True, capture_output=True,
                                    text=True).stdout)
    sid, key, name = app["sdkappid"], app["secret_key"], app["name"]
    subprocess.run([*cli, "app", "upgrade", str(sid), "--edition", "pro"], env=env,
                   check=True, capture_output=True)  # Trial stops at 100 accounts
    nodes = []
    for _ in range(2):
        port = free_port()
        nodes.append((port, subprocess.Popen([*cli, "serve", "--port", str(port)], env=env,
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)))
    try:
        for port, _ in nodes:
            wait_http(f"http://127.0.0.1:{port}/healthz")
        b = nodes[1][0]
        async with AdminClient(f"http://127.0.0.1:{b}", sid, key) as admin:
            users = [f"u{i}" for i in range(clients)]
            for i in range(0, clients, 100):
                await admin.call("im_open_login_svc/multiaccount_import",
                                 {"Accounts": users[i:i + 100]})
        socks = await asyncio.gather(*(connect(
            f"ws://127.0.0.1:{b}/v1/ws?sdkappid={sid}&identifier={u}"
            f"&usersig={user_sig(sid, key, u)}", compression=None) for u in users))
        for s in socks:
            await s.recv()
        database = Database(db)
        try:
            with events.collecting() as emitted:
                async with database.write() as conn:
                    await apps.apply(conn, sid, Disable(name), load(), UTC, actor="bench")
            committed = time.monotonic()
            if notice:
                await broadcast(broker, emitted)
            await asyncio.gather(*(s.wait_closed() for s in socks))
            elapsed = time.monotonic() - committed
        finally:
            await database.dispose()
        assert all(s.close_code == 4003 for s in socks)
        return elapsed
    finally:
        for _, proc in nodes:
            proc.terminate()
            proc.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get(
        "IMCLOUD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis", default=os.environ.get(
        "IMCLOUD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    raise_nofile()
    name = f"imcloud_bench_{os.getpid()}"
    admin_dsn = args.postgres.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    db = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    try:
        subprocess.run([str(BIN / "imcloud"), "init", "--db", db], check=True,
                       capture_output=True)
        results: dict[str, list[float]] = {"broker_notice": [], "polling_only": []}
        for _ in range(args.runs):
            results["broker_notice"].append(await one_run(db, args.redis, args.clients, True))
            results["polling_only"].append(await one_run(db, args.redis, args.clients, False))
    finally:
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()
    report: dict[str, Any] = {
        "benchmark": "disable_propagation", "clients_on_node_b": args.clients,
        "runs": args.runs, "goal_seconds": 1.0,
        "seconds_from_commit_to_last_socket_closed": {
            k: {"median": round(statistics.median(v), 3), "max": round(max(v), 3),
                "all": [round(x, 3) for x in v]} for k, v in results.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
