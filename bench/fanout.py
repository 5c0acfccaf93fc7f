"""Fan-out benchmark (issue 5): one group, N online members, 200 messages per phase.

For each N (default 1,000 and 5,000):
  * imcloud: `imcloud serve` (one process, SQLite), an AVChatRoom that N WebSocket
    clients join — the connections are held by two load processes. Messages are sent
    through the v4 REST API. Two phases:
      - burst (throughput): 200 messages back to back, each sent as soon as the
        previous reply is back. Deliveries per second = N × 200 / time from the first
        send to the last delivery; its p50/p99 are queueing delays of a saturated room
        (the clients decode a million frames), reported but not the latency goal.
      - paced (latency): 200 more at `--rate` messages per second (default 5: a busy
        live room, 25,000 deliveries/s at N = 5,000). p50/p99 send-to-receive latency.
    Server memory per idle connection: RSS growth while N joined connections sit
    idle, divided by N.
  * baseline: a bare `websockets` server holding the same N connections from the same
    two load processes, sending pre-encoded frames with `websockets.broadcast`, in the
    same two phases.
Per-message compression is off on both sides; the open-files limit is raised.

    .venv/bin/python bench/fanout.py [--sizes 1000 5000] [--messages 200] [--rate 5]

Prints one JSON object (also written to bench/out/fanout.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOADERS = 2
# The bench measures throughput, not the product's frequency limits (SPEC §7: 200 REST
# calls/s per app, 40 messages/s per group): its servers run with them off.
NO_RATE_LIMITS = {"IMCLOUD_REST_CALLS_PER_SECOND": "0", "IMCLOUD_GROUP_MESSAGES_PER_SECOND": "0"}


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


# ---------------------------------------------------------------- load processes


def loader(urls: list[str], join: dict[str, Any] | None, expect: list[int], ready: Any,
           go: list[Any], out: Any) -> None:
    """Hold len(urls) connections; join the room; for each phase, record every
    message's latency (the message text is its send time)."""
    raise_nofile()
    import orjson
    from websockets.asyncio.client import connect

    async def main() -> None:
        conns = []
        for i in range(0, len(urls), 200):  # connect in waves
            conns += await asyncio.gather(*(
                connect(u, compression=None, max_size=2**20, open_timeout=60)
                for u in urls[i:i + 200]))
        if join is not None:
            for ws in conns:
                await ws.recv()  # login frame
            for i in range(0, len(conns), 200):
                batch = conns[i:i + 200]
                await asyncio.gather(*(ws.send(orjson.dumps(join).decode()) for ws in batch))
                for ws in batch:
                    while orjson.loads(await ws.recv()).get("op") != "ack":
                        pass
        ready.set()
        for phase, count in enumerate(expect):
            latencies: list[float] = []

            async def drain(ws: Any, count: int = count,
                            latencies: list[float] = latencies) -> None:
                got = 0
                while got < count:
                    frame = orjson.loads(await ws.recv())
                    if frame.get("op") == "msg":
                        text = frame["body"][0]["MsgContent"]["Text"]
                        latencies.append(time.time() - float(text))
                        got += 1

            go[phase].wait()
            await asyncio.gather(*(drain(ws) for ws in conns))
            out.put({"phase": phase, "latencies": latencies, "last": time.time()})
        for ws in conns:
            await ws.close()

    asyncio.run(main())


def summary(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)
    return {"p50_ms": round(statistics.median(lat) * 1000, 1),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1)}


def run_load(urls: list[str], join: dict[str, Any] | None, messages: int, rate: float,
             send: Any, server_pid: int) -> dict[str, Any]:
    """Phase 1 (throughput): `messages` sent back to back. Phase 2 (latency): as many
    again, paced at `rate` per second — a busy live room, below saturation."""
    ctx = mp.get_context("spawn")
    ready = [ctx.Event() for _ in range(LOADERS)]
    go = [ctx.Event(), ctx.Event()]
    out = ctx.Queue()
    base_rss = rss_kib(server_pid)
    parts = [urls[i::LOADERS] for i in range(LOADERS)]
    procs = [ctx.Process(target=loader, args=(parts[i], join, [messages, messages],
                                              ready[i], go, out))
             for i in range(LOADERS)]
    for p in procs:
        p.start()
    for r in ready:
        if not r.wait(600):
            raise RuntimeError("load processes did not connect")
    time.sleep(2)  # idle
    idle_rss = rss_kib(server_pid)
    n = len(urls)
    report: dict[str, Any] = {
        "connections": n,
        "server_kib_per_idle_connection": round((idle_rss - base_rss) / n, 1),
    }
    for phase in (0, 1):
        go[phase].set()
        time.sleep(0.5)
        first = time.time()
        send(None if phase == 0 else rate)
        results = [out.get(timeout=600) for _ in range(LOADERS)]
        lat = [x for r in results for x in r["latencies"]]
        last = max(r["last"] for r in results)
        if phase == 0:
            report["burst"] = {
                "deliveries": len(lat),
                "seconds": round(last - first, 3),
                "deliveries_per_second": round(len(lat) / (last - first)),
                **summary(lat),
            }
        else:
            report["paced"] = {"messages_per_second": rate, "deliveries": len(lat),
                               **summary(lat)}
    for p in procs:
        p.join(60)
    return report


# ---------------------------------------------------------------- imcloud


def imcloud_run(n: int, messages: int, rate: float, workdir: Path) -> dict[str, Any]:
    import httpx
    import TLSSigAPIv2

    from imcloud.im.usersig import generate

    db = f"sqlite:///{workdir / f'fanout{n}.db'}"
    env = {**os.environ, **NO_RATE_LIMITS, "IMCLOUD_DATABASE_URL": db,
           "IMCLOUD_WS_QUEUE": str(2 * messages + 50)}
    cli = [str(BIN / "imcloud")]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    app = json.loads(subprocess.run([*cli, "app", "create", "fanout", "--json"], env=env,
                                    check=True, capture_output=True, text=True).stdout)
    sdkappid, key = app["sdkappid"], app["secret_key"]
    subprocess.run([*cli, "app", "upgrade", str(sdkappid), "--edition", "flagship"],
                   env=env, check=True, capture_output=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"{base}/healthz")
        api = TLSSigAPIv2.TLSSigAPIv2(sdkappid, key)
        http = httpx.Client(timeout=60)

        def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            url = (f"{base}/v4/{path}?sdkappid={sdkappid}&identifier=administrator"
                   f"&usersig={api.gen_sig('administrator', 3600)}&random=1")
            r = http.post(url, json=body).json()
            assert r["ErrorCode"] == 0, r
            return r

        users = [f"u{i}" for i in range(n)]
        for i in range(0, n, 100):
            call("im_open_login_svc/multiaccount_import", {"Accounts": users[i:i + 100]})
        call("group_open_http_svc/create_group",
             {"Type": "AVChatRoom", "Name": "live", "GroupId": "live"})
        urls = [f"ws://127.0.0.1:{port}/v1/ws?sdkappid={sdkappid}&identifier={u}"
                f"&usersig={generate(sdkappid, key, u, 86400)}" for u in users]
        sigs = [api.gen_sig("administrator", 3600 + i) for i in range(messages)]

        def send(rate: float | None) -> None:
            start = time.monotonic()
            for i in range(messages):
                if rate:
                    time.sleep(max(0.0, start + i / rate - time.monotonic()))
                url = (f"{base}/v4/group_open_http_svc/send_group_msg?sdkappid={sdkappid}"
                       f"&identifier=administrator&usersig={sigs[i]}&random={i}")
                body = {"GroupId": "live", "Random": i, "MsgBody": [
                    {"MsgType": "TIMTextElem", "MsgContent": {"Text": repr(time.time())}}]}
                assert http.post(url, json=body).json()["ErrorCode"] == 0

        return run_load(urls, {"id": 1, "op": "join", "group": "live"}, messages, rate,
                        send, server.pid)
    finally:
        server.terminate()
        server.wait(30)


# ---------------------------------------------------------------- raw baseline

BASELINE_SERVER = r'''
import asyncio, sys, time, resource
import orjson
from websockets.asyncio.server import serve, broadcast
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, messages = int(sys.argv[1]), int(sys.argv[2])
conns = set()
async def handler(ws):
    conns.add(ws)
    try:
        await ws.wait_closed()
    finally:
        conns.discard(ws)
async def main():
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20):
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        for phase in range(2):
            rate = float((await loop.run_in_executor(None, sys.stdin.readline)).split()[1])
            start = time.monotonic()
            for i in range(messages):
                if rate:
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                frame = orjson.dumps({"op": "msg", "group": "live", "seq": i + 1, "from": "a",
                                      "random": i, "body": [{"MsgType": "TIMTextElem",
                                      "MsgContent": {"Text": repr(time.time())}}], "time": 0})
                broadcast(conns, frame.decode())
                await asyncio.sleep(0)
        await asyncio.Future()
asyncio.run(main())
'''


def baseline_run(n: int, messages: int, rate: float) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER, str(port), str(messages)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdin is not None
        assert server.stdout.readline().strip() == "ready"
        urls = [f"ws://127.0.0.1:{port}/" for _ in range(n)]

        def send(rate: float | None) -> None:
            assert server.stdin is not None
            server.stdin.write(f"go {rate or 0}\n")
            server.stdin.flush()

        return run_load(urls, None, messages, rate, send, server.pid)
    finally:
        server.kill()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0,
                        help="messages per second of the paced (latency) phase")
    args = parser.parse_args()
    raise_nofile()
    sys.path.insert(0, str(ROOT / "src"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            print(f"N={n}: imcloud", file=sys.stderr)
            ours = imcloud_run(n, args.messages, args.rate, Path(tmp))
            print(f"N={n}: baseline", file=sys.stderr)
            raw = baseline_run(n, args.messages, args.rate)
            results.append({
                "members": n,
                "imcloud": ours,
                "raw_broadcast": raw,
                "ratio": round(ours["burst"]["deliveries_per_second"]
                               / raw["burst"]["deliveries_per_second"], 3),
            })
    report = {
        "benchmark": "fanout",
        "messages": args.messages,
        "results": results,
        "goals": {"ratio": ">= 0.5", "paced_p99_ms_at_5000": "< 200",
                  "kib_per_idle_connection": "<= 20"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fanout.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
