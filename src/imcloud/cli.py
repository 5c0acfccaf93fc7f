"""The `imcloud` command: a thin adapter over the services (SPEC §10).

Every command accepts `--db URL` and `--json`. A refusal exits 1 (with `--json`:
`{"error": {...}}` on stdout); bad usage exits 2.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import math
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from imcloud import catalog as catalog_mod
from imcloud import events
from imcloud.billing import Policy
from imcloud.catalog import ITEM_KEYS, ItemValue
from imcloud.clock import iso, parse_month, parse_time
from imcloud.errors import Refused
from imcloud.plans import Configure, Disable, Operation, Upgrade
from imcloud.realtime.broker import broadcast
from imcloud.services import accounts, apps, bills, clock, console_auth, filters, usage
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
bill_cli = typer.Typer(no_args_is_help=True, help="Issue and read bills.")
usage_cli = typer.Typer(no_args_is_help=True, help="Daily usage per app.")
filter_cli = typer.Typer(no_args_is_help=True,
                         help="An app's content-filter words (E4), added to the built-in list.")
console_cli = typer.Typer(no_args_is_help=True, help="Web console accounts (sign-in).")
cli.add_typer(clock_cli, name="clock")
cli.add_typer(app_cli, name="app")
cli.add_typer(bill_cli, name="bill")
cli.add_typer(usage_cli, name="usage")
cli.add_typer(filter_cli, name="filter")
cli.add_typer(console_cli, name="console")

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


def _month(text: str) -> tuple[int, int]:
    try:
        return parse_month(text)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


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
        with events.collecting() as emitted:
            async with d.write() as conn:
                app, _ = await apps.apply(conn, sdkappid, op, cat, s.billing_tz,
                                          actor=_actor())
                view = await apps.view(conn, app, cat, s.billing_tz)
        if s.broker_url:  # running servers hear it at once (they also poll, R6)
            await broadcast(s.broker_url, emitted)
        return view

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


def _upgrade_op(
    edition: EditionChoice, unlimited_av_rooms: bool, content_filtering: bool,
    group_member_limit: int | None, groups_per_user: int | None, history_days: int | None,
) -> Upgrade:
    return Upgrade(edition.value, _items(unlimited_av_rooms or None, content_filtering or None,
                                         group_member_limit, groups_per_user, history_days))


def _configure_op(
    edition: AnyEdition | None, unlimited_av_rooms: OnOff | None,
    content_filtering: OnOff | None, group_member_limit: int | None,
    groups_per_user: int | None, history_days: int | None,
) -> Configure:
    return Configure(edition.value if edition else None,
                     _items(_on(unlimited_av_rooms), _on(content_filtering), group_member_limit,
                            groups_per_user, history_days))


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
    op = _upgrade_op(edition, unlimited_av_rooms, content_filtering, group_member_limit,
                     groups_per_user, history_days)
    _lifecycle(sdkappid, op, db, as_json)


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
    op = _configure_op(edition, unlimited_av_rooms, content_filtering, group_member_limit,
                       groups_per_user, history_days)
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


@app_cli.command("preview")
def app_preview(
    sdkappid: int,
    edition: Annotated[AnyEdition | None, typer.Option("--edition")] = None,
    unlimited_av_rooms: Annotated[OnOff | None, typer.Option(
        "--unlimited-av-rooms", help="on|off (a bare flag is not accepted here)")] = None,
    content_filtering: Annotated[OnOff | None, typer.Option("--content-filtering")] = None,
    group_member_limit: MemberOpt = None,
    groups_per_user: GroupsOpt = None,
    history_days: HistoryOpt = None,
    downgrade: Annotated[bool, typer.Option("--downgrade")] = False,
    disable: Annotated[bool, typer.Option("--disable")] = False,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """B7: what an upgrade, change, downgrade or disable would cost, before making it.

    On a Trial app the flags describe an upgrade (`--edition pro|flagship`); on a
    postpaid app, a change of configuration.
    """

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        cat = catalog_mod.load()
        async with d.read() as conn:
            app = await apps.get(conn, sdkappid)
            op: Operation
            if disable:
                op = Disable(app.name)
            elif downgrade:
                op = Configure("trial", {})
            elif not cat.edition(app.plan.edition).postpaid:
                if edition is None or edition is AnyEdition.trial:
                    raise Refused("an upgrade preview needs --edition pro|flagship", rule="R1")
                op = Upgrade(edition.value, _configure_op(
                    None, unlimited_av_rooms, content_filtering, group_member_limit,
                    groups_per_user, history_days).items)
            else:
                op = _configure_op(edition, unlimited_av_rooms, content_filtering,
                                   group_member_limit, groups_per_user, history_days)
            return await bills.preview(conn, sdkappid, op, cat, s.billing_tz,
                                       Policy(s.proration))

    def human(p: dict[str, Any]) -> None:
        _show_lines(p["lines"], "This month's bill with the change")
        out.print(f"Adds this month: [bold]{p['this_month']}[/]   "
                  f"Monthly from next month: [bold]{p['monthly_from_next_month']}[/]")

    _emit(_run(db, as_json, work), as_json, human)


# ---------------------------------------------------------------- bills and usage


def _show_lines(lines: list[dict[str, str]], title: str) -> None:
    t = Table("Item", "Level", "Description", "From", "To", "Qty", "Unit price", "Amount",
              title=title, title_justify="left")
    for x in lines:
        t.add_row(x["item"], x["level"], x["description"], x["period_start"][:10],
                  x["period_end"][:10], x["quantity"], x["unit_price"], x["amount"])
    out.print(t)


@bill_cli.command("run")
def bill_run(
    month: Annotated[str | None, typer.Option("--month", help="YYYY-MM (default: all due)")]
    = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """B6: issue every bill due by the clock (or the bills of one month)."""
    from rich.progress import Progress as Bar
    from rich.progress import TaskID

    wanted = _month(month) if month else None

    async def work(d: Database, s: Settings) -> list[dict[str, Any]]:
        cat = catalog_mod.load()
        months = [wanted] if wanted else await bills.due_months(d, s.billing_tz, s.bill_day)
        results = []
        with Bar(console=err, disable=as_json, transient=True) as bar:
            for m in months:
                task = bar.add_task(f"bills {bills.month_key(m)}", total=None)

                def advance(done: int, total: int, task: TaskID = task) -> None:
                    bar.update(task, completed=done, total=total)

                r = await bills.run_month(
                    d, m, cat, s.billing_tz, bill_day_of_month=s.bill_day,
                    policy=Policy(s.proration), progress=advance,
                )
                results.append({"month": r.month, "bills": r.bills_issued, "new": r.new})
        return results

    def human(rows: list[dict[str, Any]]) -> None:
        if not rows:
            out.print("No bills are due.")
        for r in rows:
            out.print(f"{r['month']}: {r['new']} new bills ({r['bills']} in all)")

    _emit(_run(db, as_json, work), as_json, human)


@bill_cli.command("show")
def bill_show(
    sdkappid: int,
    month: Annotated[str, typer.Option("--month", help="YYYY-MM")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the bill as CSV.")] = False,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One issued bill with its lines."""
    m = _month(month)

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        async with d.read() as conn:
            return await bills.get(conn, sdkappid, m, s.billing_tz)

    bill = _run(db, as_json, work)
    if as_csv:
        sys.stdout.write(bills.to_csv(bill))
        return

    def human(b: dict[str, Any]) -> None:
        _show_lines(b["lines"], f"Bill {b['number']} — {b['month']} (issued {b['issued_at']})")
        out.print(f"Total: [bold]{b['total']}[/]")

    _emit(bill, as_json, human)


@bill_cli.command("list")
def bill_list(sdkappid: int, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Every bill of an app."""

    async def work(d: Database, s: Settings) -> list[dict[str, str]]:
        async with d.read() as conn:
            return await bills.list_for(conn, sdkappid)

    def human(rows: list[dict[str, str]]) -> None:
        t = Table("Month", "Number", "Total")
        for r in rows:
            t.add_row(r["month"], r["number"], r["total"])
        out.print(t)

    _emit(_run(db, as_json, work), as_json, human)


@usage_cli.command("show")
def usage_show(
    sdkappid: int,
    month: Annotated[str, typer.Option("--month", help="YYYY-MM")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Daily DAU, group count and AV rooms of an app for one month."""
    m = _month(month)

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        async with d.read() as conn:
            days = await usage.month(conn, sdkappid, *m, s.billing_tz)
        return {"sdkappid": sdkappid, "month": bills.month_key(m), "days": days}

    def human(u: dict[str, Any]) -> None:
        t = Table("Date", "DAU", "Groups", "AV rooms", title=f"Usage {u['month']}")
        for r in u["days"]:
            t.add_row(r["date"], str(r["dau"]), str(r["groups"]), str(r["av_rooms"]))
        out.print(t)

    _emit(_run(db, as_json, work), as_json, human)


@usage_cli.command("record")
def usage_record(
    sdkappid: int,
    day: Annotated[str, typer.Option("--date", help="YYYY-MM-DD")],
    dau: Annotated[int, typer.Option("--dau", min=0)] = 0,
    groups: Annotated[int, typer.Option("--groups", min=0)] = 0,
    av_rooms: Annotated[int, typer.Option("--av-rooms", min=0)] = 0,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Raise a day's usage figures (for imports and demos; the IM service meters itself)."""
    try:
        d_ = date.fromisoformat(day)
    except ValueError as e:
        raise typer.BadParameter(f"not a date YYYY-MM-DD: {day!r}") from e

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        async with d.write() as conn:
            await usage.record(conn, sdkappid, d_, dau=dau, groups=groups, av_rooms=av_rooms)
            days = await usage.month(conn, sdkappid, d_.year, d_.month, s.billing_tz)
        return next(x for x in days if x["date"] == d_.isoformat())

    _emit(_run(db, as_json, work), as_json, lambda r: out.print(r))


def _filter(sdkappid: int, words: list[str], change: str, db: str | None,
            as_json: bool) -> None:
    async def work(d: Database, s: Settings) -> dict[str, Any]:
        try:
            async with d.write() as conn:
                if change == "add":
                    current = await filters.add(conn, sdkappid, words)
                elif change == "remove":
                    current = await filters.remove(conn, sdkappid, words)
                else:
                    current = await filters.words(conn, sdkappid)
        except ValueError as e:
            raise Refused(str(e), rule="E4") from None
        return {"sdkappid": sdkappid, "words": current}

    _emit(_run(db, as_json, work), as_json,
          lambda r: out.print("\n".join(r["words"]) or "(no words of this app's own)"))


@filter_cli.command("add")
def filter_add(sdkappid: int, words: list[str], db: DbOpt = None,
               as_json: JsonOpt = False) -> None:
    """Add words to the app's list (matched case-insensitively inside text)."""
    _filter(sdkappid, words, "add", db, as_json)


@filter_cli.command("remove")
def filter_remove(sdkappid: int, words: list[str], db: DbOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Remove words from the app's list."""
    _filter(sdkappid, words, "remove", db, as_json)


@filter_cli.command("list")
def filter_list(sdkappid: int, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """The app's own words (the built-in list applies too)."""
    _filter(sdkappid, [], "list", db, as_json)


# ---------------------------------------------------------------- console accounts

PasswordOpt = Annotated[
    str | None,
    typer.Option("--password", envvar="IMCLOUD_CONSOLE_PASSWORD",
                 help="The password (seen by other users of this machine; omit it to be "
                      "asked, or set IMCLOUD_CONSOLE_PASSWORD)."),
]


def _password(given: str | None) -> str:
    if given is not None:
        return given
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True,
                            err=True))


@console_cli.command("add-user")
def console_add_user(
    name: str,
    password: PasswordOpt = None,
    admin: Annotated[bool, typer.Option("--admin", help="A console admin.")] = False,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a console account that signs in with a password (argon2id-hashed)."""
    secret = _password(password)

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        console_auth.check_username(name)
        digest = await console_auth.hash_password(secret)
        async with d.write() as conn:
            a = await console_auth.add_user(conn, name, digest, is_admin=admin)
        return {"username": a.username, "is_admin": a.is_admin}

    _emit(_run(db, as_json, work), as_json,
          lambda r: out.print(f"Console account {r['username']} added"
                              + (" (admin)" if r["is_admin"] else "")))


@console_cli.command("passwd")
def console_passwd(
    name: str,
    password: PasswordOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a console account's password; its open sessions end."""
    secret = _password(password)

    async def work(d: Database, s: Settings) -> dict[str, Any]:
        digest = await console_auth.hash_password(secret)
        async with d.write() as conn:
            a = await console_auth.set_password(conn, name, digest)
        return {"username": a.username, "is_admin": a.is_admin}

    _emit(_run(db, as_json, work), as_json,
          lambda r: out.print(f"Password of {r['username']} set; its sessions ended"))


# ---------------------------------------------------------------- serve


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port")] = None,
    db: DbOpt = None,
) -> None:
    """Serve the console and APIs (http://127.0.0.1:8080 by default).

    SIGTERM drains: WebSockets get what was queued for them, then close with 1012 and
    resume elsewhere; in-flight requests finish; the process exits 0.
    """
    import uvicorn

    from imcloud.api.app import create_app
    from imcloud.api.fastpath import FastPath
    from imcloud.ops import logs, shutdown
    from imcloud.realtime.lean_ws import LeanWSProtocol

    settings = Settings.from_env(db)
    app = create_app(settings)
    half = settings.shutdown_seconds / 2  # half to drain sockets, half for the rest
    config = uvicorn.Config(
        FastPath(app),
        host=host or settings.host,
        port=port or settings.port,
        log_config=logs.config(settings),
        log_level=settings.log_level,
        access_log=False,  # ours (ops/logs.py) has the request id and no query string
        # uvicorn's wsproto protocol, slimmed for idle sockets (realtime/lean_ws.py);
        # IMCLOUD_WS_IMPL names one of uvicorn's own instead ("wsproto", "websockets")
        ws=os.environ.get("IMCLOUD_WS_IMPL") or LeanWSProtocol,
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=max(1, math.ceil(half)),
    )
    server = shutdown.DrainingServer(config, app, half)
    shutdown.exit_zero_on_sigterm()
    server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn's startup failure status (port taken, app failed)


# ---------------------------------------------------------------- backup


def _not_sqlite(command: str, as_json: bool) -> NoReturn:
    message = (f"`imcloud {command}` works on the SQLite default; this database is "
               "PostgreSQL: use pg_dump (e.g. `pg_dump -Fc -f imcloud.dump URL`) and "
               "pg_restore (`pg_restore --clean -d URL imcloud.dump`)")
    if as_json:
        print(json.dumps({"error": {"code": None, "rule": None, "message": message}}))
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


@cli.command("backup")
def backup_cmd(
    path: Annotated[Path, typer.Argument(help="Where to write the copy")],
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")]
    = False,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy the SQLite database to PATH, online: servers keep running and writing."""
    from imcloud.ops import backup

    settings = Settings.from_env(db)
    try:
        result = backup.backup(settings.database_url, path, force=force)
    except backup.NotSqlite:
        _not_sqlite("backup", as_json)
    except Refused as e:
        _refuse(e, as_json)
    _emit(result, as_json, lambda r: out.print(
        f"Backed up {r['database']} to {r['backup']} ({r['bytes']} bytes, "
        f"integrity {r['integrity']}, {r['seconds']} s)"))


@cli.command("restore")
def restore_cmd(
    path: Annotated[Path, typer.Argument(help="A file made by `imcloud backup`")],
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the SQLite database with the backup at PATH (no server may be running
    on it); the replaced database is kept beside it."""
    from imcloud.ops import backup

    settings = Settings.from_env(db)
    try:
        result = backup.restore(settings.database_url, path)
    except backup.NotSqlite:
        _not_sqlite("restore", as_json)
    except Refused as e:
        _refuse(e, as_json)

    def human(r: dict[str, Any]) -> None:
        out.print(f"Restored {r['database']} from {r['restored_from']}")
        if r["previous"]:
            out.print(f"The database it replaced is kept as {r['previous']}")

    _emit(result, as_json, human)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
