"""The `imcloud` command: a thin adapter over the services (SPEC §10).

Every command accepts `--db URL` and `--json`. A refusal exits 1 (with `--json`:
`{"error": {...}}` on stdout); bad usage exits 2.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from imcloud import catalog as catalog_mod
from imcloud.catalog import ITEM_KEYS, ItemValue
from imcloud.clock import iso, parse_time
from imcloud.errors import Refused
from imcloud.plans import Configure, Disable, Operation, Upgrade
from imcloud.services import accounts, apps, clock
from imcloud.settings import Settings
from imcloud.store import migrate
from imcloud.store.db import Database

T = TypeVar("T")

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="imcloud: a self-hosted, multi-tenant instant-messaging cloud.",
)
clock_cli = typer.Typer(no_args_is_help=True, help="Show or move the clock.")
app_cli = typer.Typer(no_args_is_help=True, help="Create apps and change their plans.")
cli.add_typer(clock_cli, name="clock")
cli.add_typer(app_cli, name="app")

out = Console()
err = Console(stderr=True)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: IMCLOUD_DATABASE_URL or ./var)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


class EditionChoice(StrEnum):
    pro = "pro"
    flagship = "flagship"


class AnyEdition(StrEnum):
    trial = "trial"
    pro = "pro"
    flagship = "flagship"


class OnOff(StrEnum):
    on = "on"
    off = "off"


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def _run(
    db_url: str | None, as_json: bool, work: Callable[[Database, Settings], Awaitable[T]]
) -> T:
    """Run one command's async work; turn a refusal into exit 1."""
    settings = Settings.from_env(db_url)

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            return await work(db, settings)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except Refused as e:
        _refuse(e, as_json)


def _refuse(e: Refused, as_json: bool) -> NoReturn:
    if as_json:
        print(json.dumps({"error": e.as_dict()}))
    else:
        rule = f" [{e.rule}]" if e.rule else ""
        code = f" (code {e.code})" if e.code else ""
        err.print(f"[bold red]refused{rule}{code}:[/] {e.message}")
    raise typer.Exit(1)


def _emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        human(data)


def _time(text: str, settings: Settings) -> Any:
    try:
        return parse_time(text, settings.billing_tz)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


# ---------------------------------------------------------------- init, clock


@cli.command()
def init(
    simulated_clock: Annotated[
        str | None,
        typer.Option("--simulated-clock", help="Start a simulated clock at this time."),
    ] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or migrate the database; create the first console admin."""
    settings = Settings.from_env(db)
    start = _time(simulated_clock, settings) if simulated_clock else None
    migrate.upgrade(settings.database_url)

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        async with d.write() as conn:
            created = await clock.ensure(conn, start)
            await accounts.ensure_first_admin(conn)
            now = await clock.now(conn)
            simulated = await clock.is_simulated(conn)
        return {"initialised": created, "now": iso(now, s.billing_tz), "simulated": simulated}

    result = _run(db, as_json, work)
    _emit(result, as_json, lambda r: out.print(
        ("Initialised" if r["initialised"] else "Up to date") +
        f": clock {'simulated' if r['simulated'] else 'real'}, now {r['now']}"
    ))


@clock_cli.command("show")
def clock_show(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Print the current time of the clock."""

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        async with d.read() as conn:
            return {"now": iso(await clock.now(conn), s.billing_tz),
                    "simulated": await clock.is_simulated(conn)}

    _emit(_run(db, as_json, work), as_json, lambda r: out.print(
        f"{r['now']} ({'simulated' if r['simulated'] else 'real'} clock)"))


@clock_cli.command("set")
def clock_set(
    when: Annotated[str, typer.Argument(metavar="T", help="ISO 8601 time or date")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move the simulated clock forward to T."""
    t = _time(when, Settings.from_env(db))

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        async with d.write() as conn:
            await clock.set_time(conn, t)
            return {"now": iso(await clock.now(conn), s.billing_tz), "simulated": True}

    _emit(_run(db, as_json, work), as_json, lambda r: out.print(f"clock now {r['now']}"))


# ---------------------------------------------------------------- apps


def _show_app(v: dict[str, Any]) -> None:
    t = Table(title=f"{v['name']} — {v['sdkappid']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("Service version", v["label"])
    t.add_row("Status", v["status"])
    if "secret_key" in v:
        t.add_row("Secret key", v["secret_key"])
    t.add_row("Admin identifier", v["admin_identifier"])
    t.add_row("Created", v["created_at"])
    for k, val in v["items"].items():
        t.add_row(f"item {k}", _fmt_value(val))
    for k, val in v["limits"].items():
        t.add_row(f"limit {k}", "unlimited" if val is None else str(val))
    for k, can in v["changeable"].items():
        when = v["next_change_from"][k]
        text = "yes, this month" if can else (f"no, from {when}" if when else "no")
        t.add_row(f"may change {k}", text)
    out.print(t)


def _fmt_value(v: ItemValue) -> str:
    return ("on" if v else "off") if isinstance(v, bool) else str(v)


def _list_apps(rows: list[dict[str, Any]]) -> None:
    t = Table("SDKAppID", "Name", "Service version", "Status", "Created")
    for v in rows:
        t.add_row(str(v["sdkappid"]), v["name"], v["label"], v["status"], v["created_at"])
    out.print(t)


@app_cli.command("create")
def app_create(
    name: str,
    owner: Annotated[
        str | None, typer.Option(help="Console account (default: first admin)")
    ] = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an app on Trial; prints its SDKAppID and secret key."""

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        cat = catalog_mod.load()
        async with d.write() as conn:
            created = await apps.create(conn, name, cat, owner=owner, actor=_actor())
            return await apps.view(conn, created, cat, s.billing_tz, with_secret=True)

    _emit(_run(db, as_json, work), as_json, _show_app)


@app_cli.command("list")
def app_list(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List every app."""

    async def work(d: Database, s: Settings) -> list[dict[str, Any]]:
        cat = catalog_mod.load()
        async with d.read() as conn:
            return [await apps.view(conn, a, cat, s.billing_tz) for a in await apps.list_all(conn)]

    _emit(_run(db, as_json, work), as_json, _list_apps)


@app_cli.command("show")
def app_show(sdkappid: int, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """An app's service version, items, effective limits and what may still change."""

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        cat = catalog_mod.load()
        async with d.read() as conn:
            return await apps.view(conn, await apps.get(conn, sdkappid), cat, s.billing_tz)

    _emit(_run(db, as_json, work), as_json, _show_app)


@app_cli.command("history")
def app_history(sdkappid: int, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """The app's plan history (R7): who changed what, when, from what to what."""

    async def work(d: Database, s: Settings) -> list[dict[str, Any]]:
        async with d.read() as conn:
            events = await apps.history(conn, sdkappid)
        return [
            {
                "seq": e.seq,
                "at": iso(e.at, s.billing_tz),
                "actor": e.actor,
                "operation": e.operation,
                "before": e.before.to_json() if e.before else None,
                "after": e.after.to_json(),
                "version_changed": e.version_changed,
                "items_changed": sorted(e.items_changed),
            }
            for e in events
        ]

    def human(rows: list[dict[str, Any]]) -> None:
        t = Table("#", "When", "Who", "Operation", "After")
        for r in rows:
            a = r["after"]
            items = ", ".join(f"{k}={_fmt_value(v)}" for k, v in a["items"].items())
            t.add_row(str(r["seq"]), r["at"], r["actor"], r["operation"],
                      f"{a['status']} {a['edition']}: {items}")
        out.print(t)

    _emit(_run(db, as_json, work), as_json, human)


def _lifecycle(sdkappid: int, op: Operation, db: str | None, as_json: bool) -> None:
    async def work(d: Database, s: Settings) -> dict[str, Any]:
        cat = catalog_mod.load()
        async with d.write() as conn:
            app, _ = await apps.apply(conn, sdkappid, op, cat, s.billing_tz, actor=_actor())
            return await apps.view(conn, app, cat, s.billing_tz)

    _emit(_run(db, as_json, work), as_json, _show_app)


def _items(
    unlimited_av_rooms: bool | None,
    content_filtering: bool | None,
    group_member_limit: int | None,
    groups_per_user: int | None,
    history_days: int | None,
) -> dict[str, ItemValue]:
    given = dict(zip(ITEM_KEYS, (unlimited_av_rooms, content_filtering, group_member_limit,
                                 groups_per_user, history_days), strict=True))
    return {k: v for k, v in given.items() if v is not None}


MemberOpt = Annotated[int | None, typer.Option("--group-member-limit", min=1)]
GroupsOpt = Annotated[int | None, typer.Option("--groups-per-user", min=1)]
HistoryOpt = Annotated[int | None, typer.Option("--history-days", min=1)]


@app_cli.command("upgrade")
def app_upgrade(
    sdkappid: int,
    edition: Annotated[EditionChoice, typer.Option("--edition")],
    unlimited_av_rooms: Annotated[bool, typer.Option("--unlimited-av-rooms")] = False,
    content_filtering: Annotated[bool, typer.Option("--content-filtering")] = False,
    group_member_limit: MemberOpt = None,
    groups_per_user: GroupsOpt = None,
    history_days: HistoryOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """R1: upgrade a Trial app to Pro or Flagship, with items."""
    items = _items(unlimited_av_rooms or None, content_filtering or None,
                   group_member_limit, groups_per_user, history_days)
    _lifecycle(sdkappid, Upgrade(edition.value, items), db, as_json)


def _on(v: OnOff | None) -> bool | None:
    return None if v is None else v is OnOff.on


@app_cli.command("configure")
def app_configure(
    sdkappid: int,
    edition: Annotated[AnyEdition | None, typer.Option("--edition")] = None,
    unlimited_av_rooms: Annotated[OnOff | None, typer.Option("--unlimited-av-rooms")] = None,
    content_filtering: Annotated[OnOff | None, typer.Option("--content-filtering")] = None,
    group_member_limit: MemberOpt = None,
    groups_per_user: GroupsOpt = None,
    history_days: HistoryOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """R2: change the service version and/or items of a postpaid app."""
    items = _items(_on(unlimited_av_rooms), _on(content_filtering),
                   group_member_limit, groups_per_user, history_days)
    op = Configure(edition.value if edition else None, items)
    _lifecycle(sdkappid, op, db, as_json)


@app_cli.command("downgrade")
def app_downgrade(sdkappid: int, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """R3: change configuration to Trial; every value-added item ends."""
    _lifecycle(sdkappid, Configure("trial", {}), db, as_json)


@app_cli.command("disable")
def app_disable(
    sdkappid: int,
    confirm: Annotated[str, typer.Option("--confirm", help="The app's name, to confirm.")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """R6: disable the app, finally and at once."""
    _lifecycle(sdkappid, Disable(confirm), db, as_json)


# ---------------------------------------------------------------- serve


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port")] = None,
    db: DbOpt = None,
) -> None:
    """Serve the console and APIs (http://127.0.0.1:8080 by default)."""
    import uvicorn

    from imcloud.api.app import create_app

    settings = Settings.from_env(db)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
    )


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
