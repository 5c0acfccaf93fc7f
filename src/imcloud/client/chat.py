"""Async clients for imcloud's v4 REST API and its WebSocket protocol (SPEC §8, §9)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from imcloud.im import usersig


class ClientError(Exception):
    """The server refused a request; `code` is the SPEC §7 error code."""

    def __init__(self, code: int, info: str):
        super().__init__(f"{code}: {info}")
        self.code = code
        self.info = info


def user_sig(sdkappid: int, secret_key: str, identifier: str, expire: int = 86400) -> str:
    """A TLSSigAPIv2 UserSig — made on your backend, never in a client app."""
    return usersig.generate(sdkappid, secret_key, identifier, expire)


def _body(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": content}}]
    return content


class AdminClient:
    """REST calls as the app administrator; a fresh UserSig per call."""

    def __init__(self, base_url: str, sdkappid: int, secret_key: str,
                 admin: str = "administrator"):
        self.base = base_url.rstrip("/")
        self.sdkappid = sdkappid
        self.key = secret_key
        self.admin = admin
        self.http = httpx.AsyncClient(timeout=30)

    async def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        query = urlencode({
            "sdkappid": self.sdkappid, "identifier": self.admin,
            "usersig": user_sig(self.sdkappid, self.key, self.admin, 300),
            "random": random.randint(0, 2**32 - 1), "contenttype": "json"})
        r = await self.http.post(f"{self.base}/v4/{path}?{query}", json=body or {})
        data: dict[str, Any] = r.json()
        if data.get("ErrorCode", -1) != 0:
            raise ClientError(int(data.get("ErrorCode", -1)), str(data.get("ErrorInfo", "")))
        return data

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ChatClient:
    """One user's WebSocket session.

    Remembers the last sequence it saw in every group; `reconnect()` opens a new
    session and resumes each group from there, so nothing is lost or seen twice.
    """

    def __init__(self, url: str):
        self.url = url
        self.ws: ClientConnection | None = None
        self.last_seq: dict[str, int] = {}
        self.joined: set[str] = set()  # groups joined on this client (AVChatRooms too)
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.user = ""
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, base_url: str, sdkappid: int, user: str, sig: str) -> ChatClient:
        ws_base = base_url.rstrip("/").replace("http://", "ws://").replace("https://", "wss://")
        query = urlencode({"sdkappid": sdkappid, "identifier": user, "usersig": sig})
        client = cls(f"{ws_base}/v1/ws?{query}")
        await client._open()
        return client

    async def _open(self, since: dict[str, int] | None = None) -> None:
        self.closed.clear()
        url = self.url
        if since:  # resume every group from its last seen sequence, atomically
            url += "&" + urlencode({"since": orjson.dumps(since).decode()})
        self.ws = await connect(url, compression=None, max_size=2**22)
        first = orjson.loads(await self.ws.recv())
        if first.get("op") != "login" or first.get("code") != 0:
            await self.ws.close()
            raise ClientError(int(first.get("code") or -1), str(first.get("info", "")))
        self.user = str(first.get("user", ""))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                op = frame.get("op")
                if op == "ack":
                    waiter = self._waiting.pop(frame.get("id"), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
                elif op == "msg":
                    group, seq = frame["group"], int(frame["seq"])
                    if seq <= self.last_seq.get(group, 0):
                        continue  # belt and braces: the server never sends twice
                    self.last_seq[group] = seq
                    await self.inbox.put(frame)
                else:
                    await self.inbox.put(frame)
        except Exception:
            pass
        finally:
            self.close_code = self.ws.close_code
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ClientError(-1, "connection closed"))
            self._waiting.clear()
            self.closed.set()

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        if self.ws is None:
            raise ClientError(-1, "not connected")
        rid = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = waiter
        await self.ws.send(orjson.dumps({"id": rid, "op": op, **fields}).decode())
        reply = await waiter
        if reply.get("code") != 0:
            raise ClientError(int(reply.get("code") or -1), str(reply.get("info", "")))
        return reply

    async def join(self, group: str) -> int:
        after = self.last_seq.get(group)
        fields = {"group": group} if after is None else {"group": group, "after": after}
        reply = await self.request("join", **fields)
        self.last_seq.setdefault(group, int(reply["seq"]))
        self.joined.add(group)
        return int(reply["seq"])

    async def quit(self, group: str) -> None:
        await self.request("quit", group=group)
        self.last_seq.pop(group, None)
        self.joined.discard(group)

    async def sync(self, group: str, after: int | None = None) -> int:
        start = self.last_seq.get(group, 0) if after is None else after
        reply = await self.request("sync", group=group, after=start)
        return int(reply["seq"])

    async def send_group(self, group: str, content: str | list[dict[str, Any]],
                         rnd: int | None = None) -> int:
        reply = await self.request("send_group", group=group, body=_body(content),
                                   random=random.randint(0, 2**32 - 1) if rnd is None else rnd)
        return int(reply["seq"])

    async def send_c2c(self, to: str, content: str | list[dict[str, Any]]) -> str:
        reply = await self.request("send_c2c", to=to, body=_body(content),
                                   random=random.randint(0, 2**32 - 1))
        return str(reply["key"])

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.inbox.get()

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def reconnect(self) -> None:
        """A new session that resumes every group from the last sequence seen: member
        groups at connect, rooms joined on this client by joining again from there."""
        await self.close()
        await self._open(dict(self.last_seq))
        for group in list(self.joined):
            await self.join(group)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
