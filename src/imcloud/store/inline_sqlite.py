"""SQLite for SQLAlchemy's async engine without a thread per connection.

aiosqlite runs every call on a worker thread: three or four thread hand-offs per
statement cost ~0.4 ms of CPU, thirty times the statement itself. SQLite work is a
few microseconds, so here each call runs on the event loop and returns a completed
awaitable. A transaction therefore never yields to the loop between BEGIN and
COMMIT: in one process, transactions simply run one after another. Waiting for another
process's write lock (the CLI, a second server) blocks the loop for that wait; it is
bounded by `timeout`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


class Cursor:
    """The subset of aiosqlite.Cursor that SQLAlchemy's adapter uses."""

    __slots__ = ("_cur",)

    def __init__(self, cur: sqlite3.Cursor):
        self._cur = cur

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cur.close()

    async def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        self._cur.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        self._cur.executemany(sql, parameters)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cur.fetchmany(size or self._cur.arraysize)

    async def close(self) -> None:
        self._cur.close()

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cur.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cur.arraysize = value


class Connection:
    """The subset of aiosqlite.Connection that SQLAlchemy's adapter uses."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn  # the adapter checks it

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    def stop(self) -> None:
        self._connection = None
        self._conn.close()


async def connect(path: str, timeout: float = 30) -> Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), WAL, FKs on."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                           check_same_thread=False)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return Connection(conn)
