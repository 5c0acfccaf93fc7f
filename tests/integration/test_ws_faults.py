"""The gateway when the database fails under it: an error frame and a close, no drop.

A login that cannot reach the database gets `{"op": "error", "code": 10002}` and close
code 1011 (the client retries and resumes), and the node keeps serving. The fault is
real: the test's PostgreSQL database is dropped under a running `imcloud serve`.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from imcloud.im.usersig import generate
from tests.conftest import (
    Cli,
    _pg_url_for,
    drop_postgres_db,
    need_postgres,
    new_postgres_db,
)
from tests.v4client import Server

pytestmark = pytest.mark.postgres


def test_login_without_a_database_gets_error_10002_and_close_1011(
        postgres_template: str) -> None:
    name = new_postgres_db(postgres_template)
    url = _pg_url_for(need_postgres(), name)
    server = None
    try:
        imcloud = Cli(url)
        imcloud("init")
        app = imcloud("app", "create", "faults")
        sdkappid, key = app["sdkappid"], app["secret_key"]
        server = Server(url)
        ws_url = (server.base.replace("http", "ws") + f"/v1/ws?sdkappid={sdkappid}"
                  f"&identifier=administrator"
                  f"&usersig={generate(sdkappid, key, 'administrator', 3600)}")

        async def login() -> tuple[list[dict[str, object]], int | None]:
            frames = []
            async with connect(ws_url, compression=None) as ws:
                try:
                    while True:
                        frames.append(orjson.loads(await asyncio.wait_for(ws.recv(), 10)))
                        if frames[-1]["op"] == "login":
                            return frames, None
                except ConnectionClosed:
                    pass
                return frames, ws.close_code

        frames, code = asyncio.run(login())
        assert frames[-1]["op"] == "login" and code is None

        drop_postgres_db(name)
        frames, code = asyncio.run(login())
        assert frames == [{"op": "error", "code": 10002,
                           "info": "internal error; please retry"}]
        assert code == 1011
        assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
        log, server = server.stop(), None
        assert "login failed" in log  # the operator sees why, the client only the code
    finally:
        if server is not None:
            server.stop()
        drop_postgres_db(name)
