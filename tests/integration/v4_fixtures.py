"""Shared set-up for the v4 API tests (test_v4_commands.py, test_v4_errors.py).

One database and one real `imcloud serve` process per test module and backend (SQLite,
PostgreSQL): apps are tenants, so each test makes its own app in the shared database and
never sees another test's rows. The database's simulated clock is shared and only moves
forward; tests that move it read it first and work relative to it.

The server's housekeeping loop (bills, usage snapshots, retention) runs once at start,
while the database holds no app, and then not again (IMCLOUD_BILL_CHECK_SECONDS), so
nothing but the API calls under test writes an app's rows while a test compares them.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from imcloud.store.db import Database
from imcloud.store.tables import metadata
from tests.conftest import (
    Cli,
    _pg_url_for,
    drop_postgres_db,
    need_postgres,
    new_postgres_db,
)
from tests.v4client import V4, Node

START = "2019-02-01"
SERVER_ENV = {"IMCLOUD_BILL_CHECK_SECONDS": "86400"}
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

LOGIN = "im_open_login_svc"
GROUP = "group_open_http_svc"
IMPORT = f"{LOGIN}/account_import"
MULTI_IMPORT = f"{LOGIN}/multiaccount_import"
CHECK = f"{LOGIN}/account_check"
DELETE = f"{LOGIN}/account_delete"
CREATE = f"{GROUP}/create_group"
DESTROY = f"{GROUP}/destroy_group"
INFO = f"{GROUP}/get_group_info"
MODIFY = f"{GROUP}/modify_group_base_info"
ADD = f"{GROUP}/add_group_member"
REMOVE = f"{GROUP}/delete_group_member"
MEMBERS = f"{GROUP}/get_group_member_info"
JOINED = f"{GROUP}/get_joined_group_list"
APP_GROUPS = f"{GROUP}/get_appid_group_list"
SEND_GROUP = f"{GROUP}/send_group_msg"
GROUP_HISTORY = f"{GROUP}/group_msg_get_simple"
SENDMSG = "openim/sendmsg"
ROAM = "openim/admin_getroammsg"
APPINFO = "openconfigsvr/getappinfo"

# Every table with an sdkappid column: together, every row an app owns.
APP_TABLES = [t for t in metadata.sorted_tables if "sdkappid" in t.c]


@dataclass
class Env:
    """One database with a simulated clock, one server on it, the CLI for it."""

    db_url: str
    imcloud: Cli
    node: Node
    clients: list[V4] = field(default_factory=list)
    names: int = 0

    @property
    def base(self) -> str:
        return self.node.base

    def now(self) -> datetime:
        return datetime.fromisoformat(self.imcloud("clock", "show")["now"])

    def today(self) -> date:
        return self.now().date()  # billing time zone: UTC by default

    def new_app(self, edition: str | None = None, *options: str) -> tuple[dict[str, Any], V4]:
        """A new app (Trial, or upgraded now to `edition` with `options`) and an admin
        client for it."""
        self.names += 1
        app: dict[str, Any] = self.imcloud("app", "create", f"app{self.names}")
        if edition is not None:
            shown = self.imcloud("app", "upgrade", str(app["sdkappid"]), "--edition",
                                 edition, *options)
            assert shown["service_version"].lower() == edition, shown
        return app, self.client(app)

    def client(self, app: dict[str, Any]) -> V4:
        v = V4(self.base, app["sdkappid"], app["secret_key"])
        self.clients.append(v)
        return v


def _serve(db_url: str, check_log: bool) -> Iterator[Env]:
    imcloud = Cli(db_url)
    imcloud("init", "--simulated-clock", START)
    node = Node(db_url, SERVER_ENV)
    env = Env(db_url, imcloud, node)
    try:
        yield env
    finally:
        for c in env.clients:
            c.http.close()
        node.stop()
        _close_snapshots(db_url)
    if check_log:
        problems = node.problems()
        assert not problems, "".join(problems[:60])


def serve(request: pytest.FixtureRequest, *, check_log: bool = True) -> Iterator[Env]:
    """Body of a module-scoped fixture parametrized with BACKENDS. With `check_log`, the
    server must not have logged an error by the end of the module; tests of known bugs
    that make it log one use a server of their own without that check."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        folder = request.getfixturevalue("tmp_path_factory").mktemp("v4")
        path = folder / "imcloud.db"
        shutil.copy(template, path)
        yield from _serve(f"sqlite:///{path}", check_log)
    else:
        template_name: str = request.getfixturevalue("postgres_template")
        name = new_postgres_db(template_name)
        try:
            yield from _serve(_pg_url_for(need_postgres(), name), check_log)
        finally:
            drop_postgres_db(name)


# ------------------------------------------------------------------ snapshots


Snapshot = dict[str, list[tuple[Any, ...]]]


async def _snapshot(db: Database, sdkappid: int) -> Snapshot:
    async with db.read() as conn:
        out: Snapshot = {}
        for table in APP_TABLES:
            q = (sa.select(table).where(table.c.sdkappid == sdkappid)
                 .order_by(*table.primary_key.columns))
            out[table.name] = [tuple(r) for r in await conn.execute(q)]
        return out


# One Database (and the event loop its pooled connections belong to) per database,
# kept while its module runs: a snapshot is taken around every refused call.
_readers: dict[str, tuple[asyncio.Runner, Database]] = {}


def snapshot(db_url: str, sdkappid: int) -> Snapshot:
    """Every row of the app, from every table with an sdkappid column, read in one
    read transaction."""
    if db_url not in _readers:
        _readers[db_url] = (asyncio.Runner(), Database(db_url))
    runner, db = _readers[db_url]
    return runner.run(_snapshot(db, sdkappid))


def _close_snapshots(db_url: str) -> None:
    if db_url in _readers:
        runner, db = _readers.pop(db_url)
        runner.run(db.dispose())
        runner.close()


@contextmanager
def unchanged(db_url: str, sdkappid: int) -> Iterator[Snapshot]:
    """Assert that the block leaves every row of the app as it was."""
    before = snapshot(db_url, sdkappid)
    yield before
    after = snapshot(db_url, sdkappid)
    for name in before:
        assert after[name] == before[name], f"{name} changed"


def text(s: str) -> list[dict[str, Any]]:
    return [{"MsgType": "TIMTextElem", "MsgContent": {"Text": s}}]
