"""Test helpers: a real `imcloud serve` process on 127.0.0.1, and a v4 client that signs
its calls with UserSigs from the independent `tls-sig-api-v2` package."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import TLSSigAPIv2

from tests.integration.test_serve import free_port, wait_until_up

# Tests send far more than the product's frequency limits (1,000 messages into one group,
# races of hundreds of calls): servers run without them unless a test sets them
# (tests/integration/test_rate_limits.py does).
LIMITS_OFF = {"IMCLOUD_REST_CALLS_PER_SECOND": "0", "IMCLOUD_GROUP_MESSAGES_PER_SECOND": "0"}


class Server:
    """`imcloud serve` as a separate process (or several, sharing one database)."""

    def __init__(self, db_url: str, env: dict[str, str] | None = None,
                 port: int | None = None):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        exe = str(Path(sys.executable).with_name("imcloud"))
        self.proc = subprocess.Popen(
            [exe, "serve", "--port", str(self.port), "--db", db_url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **LIMITS_OFF, **(env or {})},
        )
        wait_until_up(f"{self.base}/healthz", self.proc)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace")


class Node:
    """`imcloud serve` whose stderr is drained as it runs (a full pipe would stall it
    under load) and kept, so a test can check that no request logged an error."""

    def __init__(self, db_url: str, env: dict[str, str] | None = None,
                 port: int | None = None):
        for attempt in itertools.count(1):
            try:
                self.server = Server(db_url, env, port)
                break
            except AssertionError as e:  # the free port was taken before it bound it
                if "address already in use" not in str(e) or attempt == 3 or port:
                    raise
        self.base = self.server.base
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.server.proc.stderr
        assert stream is not None
        for raw in stream:
            self.lines.append(raw.decode(errors="replace"))

    def stop(self) -> None:
        proc = self.server.proc
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._reader.join(timeout=10)

    def problems(self, since: int = 0) -> list[str]:
        return [line for line in self.lines[since:]
                if "Traceback" in line or "ERROR" in line or " 500 " in line]


class V4:
    """Calls /v4/{service}/{command} as the app's admin (or as told)."""

    def __init__(self, base: str, sdkappid: int, secret_key: str,
                 admin: str = "administrator"):
        self.base = base
        self.sdkappid = sdkappid
        self.key = secret_key
        self.admin = admin
        self.http = httpx.Client(timeout=30)

    def sig(self, identifier: str | None = None, expire: int = 3600) -> str:
        api = TLSSigAPIv2.TLSSigAPIv2(self.sdkappid, self.key)
        return str(api.gen_sig(identifier or self.admin, expire))

    def url(self, path: str, *, identifier: str | None = None, usersig: str | None = None,
            sdkappid: Any = None) -> str:
        who = identifier or self.admin
        params = {
            "sdkappid": self.sdkappid if sdkappid is None else sdkappid,
            "identifier": who,
            "usersig": usersig if usersig is not None else self.sig(who),
            "random": random.randint(0, 2**32 - 1),
            "contenttype": "json",
        }
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.base}/v4/{path}?{query}"

    def raw(self, path: str, body: Any = None, *, content: bytes | None = None,
            **kw: Any) -> httpx.Response:
        if content is None:
            content = b"{}" if body is None else httpx.Request(
                "POST", "http://x", json=body).content
        return self.http.post(self.url(path, **kw), content=content)

    def __call__(self, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        r = self.raw(path, body, **kw)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        assert {"ActionStatus", "ErrorCode", "ErrorInfo"} <= set(data), data
        return data

    def ok(self, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        data = self(path, body, **kw)
        assert data["ErrorCode"] == 0 and data["ActionStatus"] == "OK", data
        return data

    def fail(self, path: str, body: Any, code: int, **kw: Any) -> dict[str, Any]:
        data = self(path, body, **kw)
        assert (data["ErrorCode"], data["ActionStatus"]) == (code, "FAIL"), data
        return data
