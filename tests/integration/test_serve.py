"""`imcloud serve` as a real process on 127.0.0.1: the page and the health check answer,
and an app the CLI creates while the server runs is shown without a restart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import Cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"server did not answer at {url}")


def test_serve_answers_on_localhost(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    imcloud = Cli(db)
    imcloud("init", "--simulated-clock", "2019-02-01")
    port = free_port()
    exe = Path(sys.executable).with_name("imcloud")
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--db", db],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", proc)
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        page = httpx.get(f"{base}/", follow_redirects=True)
        assert page.status_code == 200 and "imcloud" in page.text
        assert "2019-02-01" in page.text  # the simulated clock is the server's clock
        imcloud("console", "add-user", "op", "--password", "op-password")
        imcloud("app", "create", "made-while-serving", "--owner", "op")
        console = httpx.Client(base_url=base)
        console.post("/console/api/login",
                     json={"username": "op", "password": "op-password"}).raise_for_status()
        assert "made-while-serving" in console.get("/console").text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
