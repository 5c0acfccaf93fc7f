"""The gateway's pre-encoded frames and the lean socket's queue and flag.

A message is encoded once and the same bytes go to every socket (`text_frame`), so
they must be frames any client parses — checked with wsproto's own client-side parser
at each length encoding. The lean protocol's `Inbox` and `Flag` stand in for
`asyncio.Queue` and `asyncio.Event` inside uvicorn: same order, same wake-ups.
"""

from __future__ import annotations

import asyncio

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from imcloud.realtime.hub import frame_payload, text_frame
from imcloud.realtime.lean_ws import Flag, Inbox


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_text_frame_is_read_by_a_websocket_client_at_every_length(size: int) -> None:
    text = ("é" * size)[:size] if size < 1000 else "x" * size
    frame = text_frame(text.encode())
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(frame + text_frame(b'{"next":1}'))
    got = [e for e in client.events() if isinstance(e, TextMessage)]
    assert [e.data for e in got] == [text, '{"next":1}']
    assert all(e.message_finished for e in got)
    assert frame_payload(frame) == text


def test_inbox_keeps_order_and_wakes_a_waiting_reader() -> None:
    async def scenario() -> list[object]:
        inbox = Inbox()
        assert inbox.empty() and inbox.qsize() == 0
        reader = asyncio.create_task(inbox.get())
        await asyncio.sleep(0)
        assert not reader.done()
        inbox.put_nowait("a")
        inbox.put_nowait("b")
        first = await reader
        assert inbox.qsize() == 1
        return [first, await inbox.get(), inbox.empty()]

    assert asyncio.run(scenario()) == ["a", "b", True]


def test_flag_wakes_every_waiter_on_set_and_blocks_after_clear() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        flag = Flag()
        assert not flag.is_set()
        waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        blocked = not any(w.done() for w in waiters)
        flag.set()
        woke = all(await asyncio.gather(*waiters))
        flag.clear()
        late = asyncio.create_task(flag.wait())
        await asyncio.sleep(0.01)
        still_blocked = not late.done()
        flag.set()
        await late
        return blocked, woke, still_blocked

    assert asyncio.run(scenario()) == (True, True, True)
