"""Events the services emit as they write; adapters publish them after commit.

Services are the only writers, so they are the ones who know what happened (a message
stored, a member added, a plan changed). They `emit` here; the adapter that opened the
transaction collects the events and hands them to the broker only once the
transaction has committed — nobody is ever told about a write that was rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Event = dict[str, Any]  # {"kind": ..., "sdkappid": ..., ...}: JSON, it crosses nodes

_pending: ContextVar[list[Event] | None] = ContextVar("imcloud_events", default=None)


def emit(kind: str, sdkappid: int, **fields: Any) -> None:
    pending = _pending.get()
    if pending is not None:
        pending.append({"kind": kind, "sdkappid": sdkappid, **fields})


@contextmanager
def collecting() -> Iterator[list[Event]]:
    """Collect what the services inside emit; publish the list after commit."""
    events: list[Event] = []
    token = _pending.set(events)
    try:
        yield events
    finally:
        _pending.reset(token)
