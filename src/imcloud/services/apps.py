"""Apps and their plan lifecycle: create, read, and every R1–R8 operation.

Each operation runs in one write transaction: lock the app, load this month's history,
ask `plans.decide`, then update the app row and append the plan event — or change
nothing when the rules refuse.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import events, plans
from imcloud.catalog import ITEM_KEYS, LIMIT_KEYS, Catalog
from imcloud.clock import iso, month_bounds
from imcloud.errors import NotFound, Refused
from imcloud.plans import AppPlan, ChangeRecord, Decision, Operation
from imcloud.services import accounts, clock
from imcloud.store.tables import apps, console_accounts, im_app_counters, plan_events
from imcloud.store.tables import clock as clock_table

MAX_APPS_PER_ACCOUNT = 300
DEFAULT_ADMIN = "administrator"


@dataclass(frozen=True)
class App:
    sdkappid: int
    name: str
    secret_key: str
    admin_identifier: str
    owner_id: int
    created_at: datetime
    plan: AppPlan
    revision: int


@dataclass(frozen=True)
class PlanEvent:
    seq: int
    at: datetime
    actor: str
    operation: str
    before: AppPlan | None
    after: AppPlan
    version_changed: bool
    items_changed: frozenset[str]


def _app(row: Any) -> App:
    return App(
        sdkappid=int(row.sdkappid),
        name=row.name,
        secret_key=row.secret_key,
        admin_identifier=row.admin_identifier,
        owner_id=int(row.owner_id),
        created_at=row.created_at,
        plan=AppPlan(
            status=row.status,
            edition=row.service_version,
            items={k: getattr(row, k) for k in ITEM_KEYS},
        ),
        revision=int(row.revision),
    )


def _plan_columns(plan: AppPlan) -> dict[str, Any]:
    return {"status": plan.status, "service_version": plan.edition, **dict(plan.items)}


# An SDKAppID is a BIGINT: a number outside it names no app (and must not reach the
# database driver, which refuses to bind it).
MAX_SDKAPPID = 2**63 - 1


async def get(conn: AsyncConnection, sdkappid: int, *, lock: bool = False) -> App:
    if not 0 < sdkappid <= MAX_SDKAPPID:
        raise NotFound(f"no app with SDKAppID {sdkappid}")
    q = sa.select(apps).where(apps.c.sdkappid == sdkappid)
    if lock:
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    if row is None:
        raise NotFound(f"no app with SDKAppID {sdkappid}")
    return _app(row)


# Hot-path statements are built once: building and hashing a statement costs as much
# as running it on SQLite.
_APP_AT = (sa.select(apps, clock_table.c.simulated.label("clock_simulated"),
                     clock_table.c.now.label("clock_now"))
           .select_from(apps.join(clock_table, sa.true()))  # the clock has one row
           .where(apps.c.sdkappid == sa.bindparam("a")))


async def get_at(conn: AsyncConnection, sdkappid: int) -> tuple[App, datetime]:
    """The app and the clock's time in one query (the hot path of every API call)."""
    row = (await conn.execute(_APP_AT, {"a": sdkappid})).first()
    if row is None:
        raise NotFound(f"no app with SDKAppID {sdkappid}")
    return _app(row), clock.resolve(bool(row.clock_simulated), row.clock_now)


async def list_all(conn: AsyncConnection, owner_id: int | None = None) -> list[App]:
    q = sa.select(apps).order_by(apps.c.created_at, apps.c.sdkappid)
    if owner_id is not None:
        q = q.where(apps.c.owner_id == owner_id)
    return [_app(r) for r in await conn.execute(q)]


async def _new_sdkappid(conn: AsyncConnection) -> int:
    while True:
        candidate = 1_400_000_000 + secrets.randbelow(100_000_000)
        taken = await conn.scalar(sa.select(apps.c.sdkappid).where(apps.c.sdkappid == candidate))
        if taken is None:
            return candidate


async def create(
    conn: AsyncConnection,
    name: str,
    catalog: Catalog,
    *,
    owner: str | None = None,
    actor: str,
    admin_identifier: str = DEFAULT_ADMIN,
) -> App:
    name = name.strip()
    # printable: no NUL (PostgreSQL cannot store it), control characters or lone
    # surrogates (no encoding can); checked first, as encoding the latter fails
    if not name or not name.isprintable() or len(name.encode()) > 64:
        raise Refused("an app name is 1 to 64 bytes of printable text", rule="R8")
    owner_id = await accounts.resolve_owner(conn, owner)
    # lock the owner so two concurrent creates cannot both be the 300th
    await conn.execute(
        sa.select(console_accounts.c.id)
        .where(console_accounts.c.id == owner_id)
        .with_for_update()
    )
    count = await conn.scalar(
        sa.select(sa.func.count()).select_from(apps).where(apps.c.owner_id == owner_id)
    )
    if (count or 0) >= MAX_APPS_PER_ACCOUNT:
        raise Refused(
            f"a console account may own at most {MAX_APPS_PER_ACCOUNT} apps", rule="R8"
        )
    now = await clock.now(conn)
    plan = plans.initial_plan(catalog)
    sdkappid = await _new_sdkappid(conn)
    await conn.execute(
        sa.insert(apps).values(
            sdkappid=sdkappid,
            name=name,
            secret_key=secrets.token_hex(32),
            admin_identifier=admin_identifier,
            owner_id=owner_id,
            created_at=now,
            revision=1,
            **_plan_columns(plan),
        )
    )
    await conn.execute(sa.insert(im_app_counters).values(
        sdkappid=sdkappid, accounts=0, groups=0, av_rooms=0, day=None, net_new_groups=0))
    await conn.execute(
        sa.insert(plan_events).values(
            sdkappid=sdkappid, seq=1, at=now, actor=actor, operation="create",
            before=None, after=plan.to_json(), version_changed=False, items_changed=[],
        )
    )
    return await get(conn, sdkappid)


async def month_records(
    conn: AsyncConnection, sdkappid: int, now: datetime, tz: tzinfo
) -> list[ChangeRecord]:
    start, _ = month_bounds(now, tz)
    rows = await conn.execute(
        sa.select(plan_events.c.at, plan_events.c.version_changed, plan_events.c.items_changed)
        .where(plan_events.c.sdkappid == sdkappid, plan_events.c.at >= start)
        .order_by(plan_events.c.seq)
    )
    return [ChangeRecord(r.at, bool(r.version_changed), frozenset(r.items_changed)) for r in rows]


async def apply(
    conn: AsyncConnection,
    sdkappid: int,
    op: Operation,
    catalog: Catalog,
    tz: tzinfo,
    *,
    actor: str,
) -> tuple[App, Decision]:
    """Run one lifecycle operation inside the caller's write transaction."""
    app = await get(conn, sdkappid, lock=True)
    now = await clock.now(conn)
    records = await month_records(conn, sdkappid, now, tz)
    decision = plans.decide(op, app.name, app.plan, records, now, tz, catalog)
    seq = app.revision + 1
    updated = await conn.execute(
        sa.update(apps)
        .where(apps.c.sdkappid == sdkappid, apps.c.revision == app.revision)
        .values(revision=seq, **_plan_columns(decision.after))
    )
    if updated.rowcount != 1:  # a concurrent writer won; the caller may retry
        raise Refused("the app changed concurrently; try again")
    await conn.execute(
        sa.insert(plan_events).values(
            sdkappid=sdkappid,
            seq=seq,
            at=now,
            actor=actor,
            operation=decision.operation,
            before=decision.before.to_json(),
            after=decision.after.to_json(),
            version_changed=decision.version_changed,
            items_changed=sorted(decision.items_changed),
        )
    )
    events.emit("app_changed", sdkappid, status=decision.after.status, revision=seq)
    return await get(conn, sdkappid), decision


async def history(conn: AsyncConnection, sdkappid: int) -> list[PlanEvent]:
    await get(conn, sdkappid)
    rows = await conn.execute(
        sa.select(plan_events).where(plan_events.c.sdkappid == sdkappid).order_by(plan_events.c.seq)
    )
    return [
        PlanEvent(
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            operation=r.operation,
            before=AppPlan.from_json(r.before) if r.before is not None else None,
            after=AppPlan.from_json(r.after),
            version_changed=bool(r.version_changed),
            items_changed=frozenset(r.items_changed),
        )
        for r in rows
    ]


async def view(
    conn: AsyncConnection,
    app: App,
    catalog: Catalog,
    tz: tzinfo,
    *,
    with_secret: bool = False,
) -> dict[str, Any]:
    """The stable JSON shape of SPEC §10 for `app create/show` and lifecycle results."""
    now = await clock.now(conn)
    records = await month_records(conn, app.sdkappid, now, tz)
    can, later = plans.changeable(app.plan, records, now, tz, catalog)
    edition = catalog.edition(app.plan.edition)
    limits = plans.effective_limits(app.plan, catalog)
    out: dict[str, Any] = {"sdkappid": app.sdkappid, "name": app.name}
    if with_secret:
        out["secret_key"] = app.secret_key
    out.update(
        {
            "admin_identifier": app.admin_identifier,
            "created_at": iso(app.created_at, tz),
            "status": app.plan.status,
            "service_version": edition.name,
            "label": "Disabled" if app.plan.status == "disabled" else edition.label,
            "items": {k: app.plan.items[k] for k in ITEM_KEYS},
            "limits": {k: limits[k] for k in LIMIT_KEYS},
            "changeable": can,
            "next_change_from": {k: iso(v, tz) if v else None for k, v in later.items()},
        }
    )
    return out
