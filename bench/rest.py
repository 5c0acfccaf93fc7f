"""Benchmark: the v4 REST API over HTTP against a bare FastAPI + SQLite endpoint.

Measures requests/s and p50/p99 latency on 127.0.0.1 of

  (a) `group_open_http_svc/send_group_msg` to a 100-member Public group, From_Account a
      member, every request carrying a real admin UserSig the server verifies;
  (b) `group_open_http_svc/add_group_member`, one fresh (pre-imported) account per
      request, spread round-robin over groups with room (MaxMemberCount 200, Pro);
  (c) a bare endpoint: a tiny FastAPI app defined here that does one INSERT and COMMIT
      per request through `imcloud.store.db.Database` (so the same SQLite settings:
      aiosqlite, NullPool, WAL, synchronous=NORMAL, busy_timeout, BEGIN IMMEDIATE),
      served by `imcloud serve`'s own code with its create_app swapped for the bare
      app, so uvicorn gets the same options (one worker, loop/http "auto" = uvloop +
      httptools, access log on);

and reports imcloud_rps / bare_rps for both commands (goal: >= 0.5).

Steps: a fresh SQLite database under /tmp (`imcloud init --simulated-clock 2019-02-01`),
`imcloud app create`, `imcloud app upgrade ID --edition pro`; then `imcloud serve` as a
child process and, through the v4 API itself, the accounts (multiaccount_import, 100
per call) and the groups. The load generator runs in separate processes (fork): a small
HTTP/1.1 keep-alive client on uvloop with a fixed number of connections, each with one
request in flight (so --concurrency requests in flight in all). Requests are formatted
on the fly from a pool of pre-generated UserSigs (`tls-sig-api-v2`, distinct expire
values), so signing is not on the client's hot path. Each scenario runs --warmup
seconds, then --seconds measured; server and client CPU over the measured window are
reported so one can see which side is saturated.

After each scenario the results are checked through the API (last MsgSeq, member
counts) and with sqlite3; replies with a non-zero ErrorCode (or non-200) are counted.

    .venv/bin/python bench/rest.py                 # 15 s per scenario (~2 min)
    .venv/bin/python bench/rest.py --seconds 5 --accounts 20000
    .venv/bin/python bench/rest.py --profile       # + py-spy of send_group_msg load

Prints one JSON object on stdout (progress on stderr) and writes bench/out/rest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import Response

from imcloud.store.db import Database

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
EXE = Path(sys.executable).with_name("imcloud")
SIMULATED_CLOCK = "2019-02-01"
BIG_GROUP = "@bench-big"
BIG_MEMBERS = 100  # owner + 99
ADD_CAP = 200  # MaxMemberCount of the add_group_member groups (the Pro default limit)
SIG_POOL = 1000
SEND = "/v4/group_open_http_svc/send_group_msg"
ADD = "/v4/group_open_http_svc/add_group_member"
BARE = "/bare"


def log(msg: str) -> None:
    print(f"[rest] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def member(i: int) -> str:
    return f"m{i:03d}"


def fresh(i: int) -> str:
    return f"a{i:06d}"


def add_group(i: int) -> str:
    return f"@bench-add-{i:04d}"


# ------------------------------------------------------------------ the bare server


def bare_app(db_url: str) -> FastAPI:
    """The baseline: one INSERT + COMMIT per request through imcloud's own Database."""
    rows = sa.Table("bare_rows", sa.MetaData(),
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("k", sa.BigInteger, nullable=False),
                    sa.Column("body", sa.Text, nullable=False))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(db_url)
        try:
            yield
        finally:
            await app.state.db.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(BARE)
    async def bare(request: Request) -> Response:
        raw = await request.body()
        db: Database = request.app.state.db
        async with db.write() as conn:
            await conn.execute(sa.insert(rows).values(
                k=int(request.query_params.get("random", "0")), body=raw.decode()))
        body = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}
        return Response(orjson.dumps(body), media_type="application/json")

    return app


def bare_server(port: int, db_url: str) -> None:
    """Serve the bare app through `imcloud serve` itself (its create_app swapped for ours),
    so uvicorn gets exactly the options `imcloud serve` gives it, now and after changes."""
    import imcloud.api.app
    from imcloud import cli as imcloud_cli

    imcloud.api.app.create_app = lambda settings=None: bare_app(db_url)  # type: ignore
    imcloud_cli.serve(host="127.0.0.1", port=port, db=db_url)


# ------------------------------------------------------------------ processes

# The bench measures throughput, not the product's frequency limits (SPEC §7: 200 REST
# calls/s per app, 40 messages/s per group): its servers run with them off.
NO_RATE_LIMITS = {"IMCLOUD_REST_CALLS_PER_SECOND": "0", "IMCLOUD_GROUP_MESSAGES_PER_SECOND": "0"}


class Proc:
    """A server child process: stdout (the access log) to /dev/null, stderr to a file."""

    def __init__(self, argv: list[str], health: str, err_path: Path):
        self.err_path = err_path
        self.err = open(err_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.err,
                                     env={**os.environ, **NO_RATE_LIMITS})
        self.pid = self.proc.pid
        import httpx
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {err_path.read_text()[-2000:]}")
            try:
                if httpx.get(health, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not answer at {health}")
            time.sleep(0.1)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()
        text = self.err_path.read_text(errors="replace")
        return "\n".join(line for line in text.splitlines()
                         if "Traceback" in line or "ERROR" in line or "Error" in line)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs (/proc/stat), to see other load on the machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def cli(db_url: str, *args: str) -> Any:
    r = subprocess.run([str(EXE), *args, "--db", db_url, "--json"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"imcloud {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return json.loads(r.stdout)


# ------------------------------------------------------------------ v4 setup client


class V4:
    def __init__(self, base: str, sdkappid: int, key: str, admin: str):
        import httpx
        import TLSSigAPIv2
        self.base, self.sdkappid, self.admin = base, sdkappid, admin
        self.api = TLSSigAPIv2.TLSSigAPIv2(sdkappid, key)
        self.http = httpx.Client(timeout=60)
        self.n = 0

    def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        sig = self.api.gen_sig(self.admin, 3600)
        url = (f"{self.base}/v4/{path}?sdkappid={self.sdkappid}&identifier={self.admin}"
               f"&usersig={sig}&random={self.n}&contenttype=json")
        r = self.http.post(url, json=body)
        data: dict[str, Any] = r.json()
        if r.status_code != 200 or data.get("ErrorCode") != 0:
            raise SystemExit(f"{path} {body!r:.200} -> {r.status_code} {data}")
        return data


def setup(v4: V4, accounts: int, groups: int) -> dict[str, float]:
    t0 = time.perf_counter()
    members = [member(i) for i in range(BIG_MEMBERS)]
    v4("im_open_login_svc/multiaccount_import", {"Accounts": members})
    for start in range(0, accounts, 100):
        ids = [fresh(i) for i in range(start, min(start + 100, accounts))]
        v4("im_open_login_svc/multiaccount_import", {"Accounts": ids})
        if start and start % 10_000 == 0:
            log(f"  imported {start} accounts")
    t1 = time.perf_counter()
    v4("group_open_http_svc/create_group", {
        "Owner_Account": members[0], "Type": "Public", "GroupId": BIG_GROUP,
        "Name": "bench big", "MaxMemberCount": ADD_CAP,
        "MemberList": [{"Member_Account": u} for u in members[1:]]})
    for g in range(groups):
        v4("group_open_http_svc/create_group", {
            "Type": "Public", "GroupId": add_group(g), "Name": f"bench add {g}",
            "MaxMemberCount": ADD_CAP})
    t2 = time.perf_counter()
    return {"import_seconds": round(t1 - t0, 2), "groups_seconds": round(t2 - t1, 2)}


def make_sigs(sdkappid: int, key: str, admin: str) -> list[str]:
    import TLSSigAPIv2
    api = TLSSigAPIv2.TLSSigAPIv2(sdkappid, key)
    return [str(api.gen_sig(admin, 86_400 + i)) for i in range(SIG_POOL)]


# ------------------------------------------------------------------ load generator


class Plan:
    """What one scenario sends; `request(i)` is the i-th request's (path+query, body)."""

    def __init__(self, kind: str, sdkappid: int, admin: str, sigs: list[str],
                 accounts: int = 0, groups: int = 0):
        self.kind, self.sdkappid, self.admin, self.sigs = kind, sdkappid, admin, sigs
        self.accounts, self.groups = accounts, groups
        self.path = {"send": SEND, "add": ADD, "bare": BARE}[kind]

    def limit(self) -> int | None:
        return self.accounts if self.kind == "add" else None

    def request(self, i: int) -> tuple[str, bytes]:
        sig = self.sigs[i % len(self.sigs)]
        target = (f"{self.path}?sdkappid={self.sdkappid}&identifier={self.admin}"
                  f"&usersig={sig}&random={i}&contenttype=json")
        if self.kind == "add":
            body = (f'{{"GroupId":"{add_group(i % self.groups)}",'
                    f'"MemberList":[{{"Member_Account":"{fresh(i)}"}}]}}')
        else:  # send, and the same body for the bare endpoint
            body = (f'{{"GroupId":"{BIG_GROUP}","From_Account":"{member(i % BIG_MEMBERS)}",'
                    f'"Random":{i},"MsgBody":[{{"MsgType":"TIMTextElem",'
                    f'"MsgContent":{{"Text":"hello {i}"}}}}]}}')
        return target, body.encode()


def client_proc(port: int, plan: Plan, index: int, nprocs: int, conns: int, warmup: float,
                seconds: float, barrier: Any, server_pid: int, out: Any) -> None:
    import uvloop

    host = f"127.0.0.1:{port}".encode()
    lat = array("d")
    res: dict[str, Any] = {"ok": 0, "errors": 0, "warm_ok": 0, "warm_errors": 0,
                           "codes": Counter(), "max_seq": 0, "exhausted": False,
                           "reconnects": 0}
    counter = [index]  # request numbers index, index + nprocs, ...
    limit = plan.limit()

    async def conn_loop(t_measure: float, t_end: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            i = counter[0]
            if limit is not None and i >= limit:
                res["exhausted"] = True
                break
            counter[0] += nprocs
            target, body = plan.request(i)
            req = (b"POST " + target.encode() + b" HTTP/1.1\r\nHost: " + host +
                   b"\r\nContent-Type: application/json\r\nContent-Length: " +
                   str(len(body)).encode() + b"\r\n\r\n" + body)
            t0 = time.perf_counter()
            ok = False
            try:
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = None
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                if length is None:
                    raise RuntimeError("no Content-Length")
                payload = await reader.readexactly(length)
                t1 = time.perf_counter()
                data = orjson.loads(payload) if status == 200 else {}
                code = data.get("ErrorCode", f"http {status}")
                if code == 0 and plan.kind == "add" and data["MemberList"][0]["Result"] != 1:
                    code = f"Result {data['MemberList'][0]['Result']}"
                if code == 0:
                    ok = True
                    if plan.kind == "send":
                        res["max_seq"] = max(res["max_seq"], data["MsgSeq"])
                else:
                    res["codes"][str(code)] += 1
            except (OSError, asyncio.IncompleteReadError, RuntimeError) as e:
                t1 = time.perf_counter()
                res["codes"][type(e).__name__] += 1
                res["reconnects"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if t0 >= t_measure:
                if ok:
                    res["ok"] += 1
                    lat.append((t1 - t0) * 1000)
                else:
                    res["errors"] += 1
            elif ok:
                res["warm_ok"] += 1
            else:
                res["warm_errors"] += 1
        writer.close()

    async def main() -> None:
        barrier.wait()
        start = time.perf_counter()
        t_measure, t_end = start + warmup, start + warmup + seconds
        tasks = [asyncio.create_task(conn_loop(t_measure, t_end)) for _ in range(conns)]
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        cpu0, srv0, w0 = time.process_time(), cpu_seconds(server_pid), time.perf_counter()
        sys0 = system_cpu()
        await asyncio.gather(*tasks)
        w1 = time.perf_counter()
        sys1 = system_cpu()
        res["window"] = w1 - w0
        res["client_cpu"] = time.process_time() - cpu0
        res["server_cpu"] = cpu_seconds(server_pid) - srv0
        res["system_busy"] = (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1])

    uvloop.run(main())
    res["codes"] = dict(res["codes"])
    res["lat"] = lat.tobytes()
    out.put((index, res))


def run_load(port: int, plan: Plan, *, procs: int, concurrency: int, warmup: float,
             seconds: float, server_pid: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    per = [concurrency // procs + (1 if k < concurrency % procs else 0) for k in range(procs)]
    ps = [ctx.Process(target=client_proc, args=(port, plan, k, procs, per[k], warmup, seconds,
                                                barrier, server_pid, out)) for k in range(procs)]
    for p in ps:
        p.start()
    results = [out.get(timeout=warmup + seconds + 120)[1] for _ in ps]
    for p in ps:
        p.join()
    lat = array("d")
    for r in results:
        lat.frombytes(r.pop("lat"))
    lat_sorted = sorted(lat)
    window = max(r["window"] for r in results)
    codes: Counter[str] = Counter()
    for r in results:
        codes.update(r["codes"])
    ok = sum(r["ok"] for r in results)
    return {
        "requests": ok,
        "seconds": round(window, 3),
        "rps": round(ok / window, 1),
        "p50_ms": round(_pct(lat_sorted, 50), 2),
        "p99_ms": round(_pct(lat_sorted, 99), 2),
        "mean_ms": round(statistics.fmean(lat_sorted), 2) if lat_sorted else None,
        "errors": sum(r["errors"] for r in results),
        "error_codes": dict(codes),
        "warmup_requests": sum(r["warm_ok"] for r in results),
        "warmup_errors": sum(r["warm_errors"] for r in results),
        "server_cpu_pct": round(100 * results[0]["server_cpu"] / window, 1),
        "server_cpu_ms_per_request": round(1000 * results[0]["server_cpu"] / ok, 2) if ok else None,
        "client_cpu_pct": round(100 * sum(r["client_cpu"] for r in results) / window, 1),
        # all CPUs busy, in % of one core (100 * cores = everything busy): if this is far
        # above server + client, something else was running on the machine meanwhile
        "machine_cpu_pct": round(100 * (os.cpu_count() or 1) * results[0]["system_busy"], 1),
        "exhausted": any(r["exhausted"] for r in results),
        "_max_seq": max(r["max_seq"] for r in results),
    }


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


# ------------------------------------------------------------------ profile


def profile_summary(raw: Path, top: int) -> dict[str, Any]:
    """py-spy `--gil --threads --format raw` (collapsed stacks of whichever thread holds
    the GIL) → share per thread, per library (by the innermost Python frame), and the
    functions with the largest inclusive and self share of all samples. Native code
    (uvloop, httptools, sqlite3 with the GIL held) counts to the Python frame above it:
    `Runner.run (asyncio/runners.py)` self time is uvloop's own C event loop."""
    total = 0
    by_thread: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        total += count
        kind = "main" if "MainThread" in thread or "(" not in thread else "other"
        by_thread["event loop (main thread)" if kind == "main" else "aiosqlite threads"] += count
        names = [_short(f) for f in frames]
        for name in set(names):
            incl[name] += count
        if names:
            self_[names[-1]] += count
            by_layer[_layer(names[-1])] += count
    pct = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "threads_pct": {k: pct(v) for k, v in by_thread.most_common()},
        "library_self_pct": {k: pct(v) for k, v in by_layer.most_common()},
        "inclusive_pct": {k: pct(v) for k, v in incl.most_common(top)},
        "self_pct": {k: pct(v) for k, v in self_.most_common(top)},
    }


IMCLOUD_DIRS = ("api", "services", "store", "im", "realtime", "console", "plans", "catalog",
                "billing", "cli.py", "events.py", "clock.py", "errors.py", "settings.py", "imcloud")


def _layer(short: str) -> str:
    path = short.rsplit(" (", 1)[-1].rstrip(")")
    top = path.split("/", 1)[0]
    if top in IMCLOUD_DIRS:
        return "imcloud"
    if top.endswith(".py"):
        return f"stdlib {top}"
    return top


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" → "func (module.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def run_profile(port: int, plan: Plan, pid: int, args: argparse.Namespace,
                tmp: Path) -> dict[str, Any]:
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return {"error": "py-spy is not installed in this venv (pip install py-spy)"}
    raw = OUT / "rest-send-profile.txt"  # collapsed stacks: flamegraph.pl / speedscope
    dur = int(args.seconds)
    proc = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(dur),
                             "--rate", "200", "--gil", "--threads", "--format", "raw",
                             "-o", str(raw)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    load = run_load(port, plan, procs=args.clients, concurrency=args.concurrency,
                    warmup=0.0, seconds=dur, server_pid=pid)
    _, err = proc.communicate(timeout=60)
    if proc.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {err.decode(errors='replace')[-500:]}"}
    out = profile_summary(raw, args.profile_top)
    out["server_cpu_ms_per_request"] = load["server_cpu_ms_per_request"]
    out["rps_while_profiling"] = load["rps"]
    out["sends"] = load["requests"] + load["warmup_requests"]
    out["collapsed_stacks"] = str(raw)
    return out


# ------------------------------------------------------------------ checks


def check_send(v4: V4, expected_sends: int, max_seq: int) -> dict[str, Any]:
    hist = v4("group_open_http_svc/group_msg_get_simple",
              {"GroupId": BIG_GROUP, "ReqMsgNumber": 1})
    last = hist["RspMsgList"][0]["MsgSeq"] if hist["RspMsgList"] else 0
    info = v4("group_open_http_svc/get_group_info", {"GroupIdList": [BIG_GROUP]})
    members = info["GroupInfo"][0]["MemberNum"]
    return {"last_msg_seq": last, "successful_sends": expected_sends,
            "max_msg_seq_replied": max_seq, "member_num": members,
            "ok": last == expected_sends == max_seq and members == BIG_MEMBERS}


def check_add(v4: V4, db_path: Path, groups: int, expected_adds: int) -> dict[str, Any]:
    total = 0
    for start in range(0, groups, 50):
        ids = [add_group(g) for g in range(start, min(start + 50, groups))]
        info = v4("group_open_http_svc/get_group_info", {"GroupIdList": ids})
        total += sum(g["MemberNum"] for g in info["GroupInfo"])
    with sqlite3.connect(db_path) as c:
        rows = c.execute("SELECT count(*) FROM im_members WHERE group_id LIKE '@bench-add-%'"
                         ).fetchone()[0]
    return {"member_num_sum": total, "member_rows": rows, "successful_adds": expected_adds,
            "ok": total == rows == expected_adds}


def check_bare(db_path: Path, expected: int) -> dict[str, Any]:
    with sqlite3.connect(db_path) as c:
        rows = c.execute("SELECT count(*) FROM bare_rows").fetchone()[0]
        mode = c.execute("PRAGMA journal_mode").fetchone()[0]
    return {"rows": rows, "successful_inserts": expected, "journal_mode": mode,
            "ok": rows == expected and mode == "wal"}


# ------------------------------------------------------------------ machine


async def db_settings(url: str) -> dict[str, Any]:
    """What `imcloud.store.db.Database` (used by both servers) does, read back."""
    db = Database(url)
    try:
        async with db.write() as conn:
            pragmas = {p: (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
                       for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")}
        pool = db.engine.pool
        size = pool.size() if hasattr(pool, "size") else None
        return {"pool": type(pool).__name__, "pool_size": size,
                "max_overflow": getattr(pool, "_max_overflow", None),
                "pragmas": pragmas, "write_begin": "BEGIN IMMEDIATE"}
    finally:
        await db.dispose()


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("uvicorn", "uvloop", "httptools", "fastapi", "starlette", "pydantic",
                "sqlalchemy", "aiosqlite", "orjson"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    mem = None
    with suppress(ValueError, OSError):
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    git: dict[str, Any] = {}
    with suppress(OSError, subprocess.SubprocessError):
        root = BENCH.parent
        git["commit"] = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                       capture_output=True, text=True).stdout.strip()
        git["modified_src"] = [line[3:] for line in subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True, text=True).stdout.splitlines()]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem, "git": git,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "os": platform.platform(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "packages": versions,
            "uvicorn": "both servers via `imcloud serve` (src/imcloud/cli.py): 1 worker, "
                       f"loop=auto → {'uvloop' if versions['uvloop'] else 'asyncio'}, "
                       f"http=auto → {'httptools' if versions['httptools'] else 'h11'}, "
                       "access log on (stdout → /dev/null)"}


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per scenario")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per scenario")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    ap.add_argument("--clients", type=int, default=1, help="load-generator processes")
    ap.add_argument("--accounts", type=int, default=60_000,
                    help="fresh accounts for add_group_member (one per request)")
    ap.add_argument("--profile", action="store_true",
                    help="also py-spy the server under send_group_msg load (not measured)")
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--keep", type=Path, help="keep the databases in this directory")
    ap.add_argument("--out", type=Path, default=OUT / "rest.json")
    ap.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_server:
        bare_server(args.port, args.db)
        return

    OUT.mkdir(exist_ok=True)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="rest-", dir=args.keep))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="imcloud-rest-", dir="/tmp"))
    db_path, bare_path = tmp / "imcloud.db", tmp / "bare.db"
    db_url, bare_url = f"sqlite:///{db_path}", f"sqlite:///{bare_path}"
    groups = math.ceil(args.accounts / ADD_CAP)  # round-robin: at most ADD_CAP per group
    report: dict[str, Any] = {"config": {
        "seconds": args.seconds, "warmup": args.warmup, "concurrency": args.concurrency,
        "client_processes": args.clients, "accounts_for_add": args.accounts,
        "add_groups": groups, "group_members": BIG_MEMBERS, "usersig_pool": SIG_POOL,
        "database": str(tmp)}}
    t_start = time.perf_counter()
    try:
        log(f"database {db_path}")
        cli(db_url, "init", "--simulated-clock", SIMULATED_CLOCK)
        app = cli(db_url, "app", "create", "rest-bench")
        sdkappid, key, admin = app["sdkappid"], app["secret_key"], app["admin_identifier"]
        cli(db_url, "app", "upgrade", str(sdkappid), "--edition", "pro")
        report["database_settings"] = asyncio.run(db_settings(db_url))
        port = free_port()
        server = Proc([str(EXE), "serve", "--port", str(port), "--db", db_url],
                      f"http://127.0.0.1:{port}/healthz", tmp / "imcloud.err")
        try:
            v4 = V4(f"http://127.0.0.1:{port}", sdkappid, key, admin)
            log(f"setup: {args.accounts} accounts, 1 group of {BIG_MEMBERS}, {groups} groups")
            report["setup"] = setup(v4, args.accounts, groups)
            sigs = make_sigs(sdkappid, key, admin)
            common = dict(procs=args.clients, concurrency=args.concurrency,
                          warmup=args.warmup, seconds=args.seconds, server_pid=server.pid)

            log("scenario send_group_msg")
            send = run_load(port, Plan("send", sdkappid, admin, sigs), **common)
            send["check"] = check_send(v4, send["requests"] + send["warmup_requests"],
                                       send.pop("_max_seq"))
            log(f"  {send['rps']} req/s")

            log("scenario add_group_member")
            add = run_load(port, Plan("add", sdkappid, admin, sigs, args.accounts, groups),
                           **common)
            add.pop("_max_seq")
            add["check"] = check_add(v4, db_path, groups,
                                     add["requests"] + add["warmup_requests"])
            log(f"  {add['rps']} req/s")

            if args.profile:
                log("profile: send_group_msg under py-spy")
                report["profile_send_group_msg"] = run_profile(
                    port, Plan("send", sdkappid, admin, sigs), server.pid, args, tmp)
        finally:
            server_errors = server.stop()

        log("scenario bare INSERT + COMMIT")
        with sqlite3.connect(bare_path) as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("CREATE TABLE bare_rows (id INTEGER PRIMARY KEY, k BIGINT NOT NULL, "
                      "body TEXT NOT NULL)")
        bport = free_port()
        bserver = Proc([sys.executable, __file__, "--bare-server", "--port", str(bport),
                        "--db", bare_url], f"http://127.0.0.1:{bport}/healthz",
                       tmp / "bare.err")
        try:
            bare = run_load(bport, Plan("bare", sdkappid, admin, sigs),
                            **{**common, "server_pid": bserver.pid})
            bare.pop("_max_seq")
        finally:
            bare_errors = bserver.stop()
        bare["check"] = check_bare(bare_path, bare["requests"] + bare["warmup_requests"])
        log(f"  {bare['rps']} req/s")

        report["scenarios"] = {"send_group_msg": send, "add_group_member": add,
                               "bare_insert_commit": bare}
        report["ratio"] = {
            "send_group_msg": round(send["rps"] / bare["rps"], 3),
            "add_group_member": round(add["rps"] / bare["rps"], 3),
            "goal": 0.5,
        }
        report["goal_met"] = {k: report["ratio"][k] >= 0.5
                              for k in ("send_group_msg", "add_group_member")}
        report["checks_ok"] = all(s["check"]["ok"] and s["errors"] == 0
                                  for s in report["scenarios"].values())
        report["server_log_errors"] = {"imcloud": server_errors[-2000:],
                                       "bare": bare_errors[-2000:]}
        report["machine"] = machine()
        report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(report, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
