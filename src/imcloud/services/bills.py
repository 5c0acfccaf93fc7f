"""Bills (B6): bill runs, reading bills, and previews (B7) — all through `billing`.

A bill run streams apps in batches of `BATCH` (memory stays flat in the number of
apps), computes each app's bill with the pure engine, and inserts the batch with
ON CONFLICT DO NOTHING on (app, month): two runners at once, or a rerun after a crash,
leave exactly one bill per app and month. A month whose run finished is recorded in
`bill_runs` and never run again (history is append-only and the clock only moves
forward, so no app can become billable for a closed month later).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import billing, plans
from imcloud.billing import BillLine, DailyUsage, Policy
from imcloud.catalog import Catalog
from imcloud.clock import iso, month_of, month_start, next_month
from imcloud.errors import NotFound, Refused
from imcloud.ops import metrics
from imcloud.plans import AppPlan, Operation
from imcloud.services import apps, clock
from imcloud.services.usage import month_days
from imcloud.store.db import Database
from imcloud.store.tables import apps as apps_table
from imcloud.store.tables import bill_runs, bills, plan_events, usage_daily

BATCH = 1000
Month = tuple[int, int]
Progress = Callable[[int, int], None]


def month_key(m: Month) -> str:
    return f"{m[0]:04d}-{m[1]:02d}"


def bill_day(m: Month, tz: tzinfo, day: int) -> datetime:
    """B6: when the bill for month m is issued (day `day` of the next month, 00:00)."""
    return month_start(*next_month(*m), tz) + timedelta(days=day - 1)


@dataclass(frozen=True)
class RunResult:
    month: str
    bills_issued: int  # bills that exist for the month after the run
    new: int  # bills this run inserted


def _line_json(line: BillLine, tz: tzinfo) -> dict[str, str]:
    return {
        "item": line.item,
        "level": line.level,
        "description": line.description,
        "period_start": iso(line.period_start, tz),
        "period_end": iso(line.period_end, tz),
        "quantity": str(line.quantity),
        "unit_price": str(line.unit_price),
        "amount": str(line.amount),
    }


async def timeline(conn: AsyncConnection, sdkappid: int, until: datetime | None = None
                   ) -> list[tuple[datetime, AppPlan]]:
    q = (sa.select(plan_events.c.at, plan_events.c.after)
         .where(plan_events.c.sdkappid == sdkappid).order_by(plan_events.c.seq))
    if until is not None:
        q = q.where(plan_events.c.at < until)
    return [(r.at, AppPlan.from_json(r.after)) for r in await conn.execute(q)]


async def daily_usage(conn: AsyncConnection, ids: list[int], m: Month, tz: tzinfo
                      ) -> dict[int, list[DailyUsage]]:
    start, end = month_days(*m, tz)
    out: dict[int, list[DailyUsage]] = defaultdict(list)
    rows = await conn.execute(
        sa.select(usage_daily.c.sdkappid, usage_daily.c.day, usage_daily.c.dau,
                  usage_daily.c.groups)
        .where(usage_daily.c.sdkappid.in_(ids), usage_daily.c.day >= start,
               usage_daily.c.day < end)
    )
    for sdkappid, day, dau, groups in rows:  # plain tuples: Row attributes cost per row
        out[int(sdkappid)].append(DailyUsage(day, int(dau), int(groups)))
    return out


async def _completed(conn: AsyncConnection, m: Month) -> bool:
    return await conn.scalar(
        sa.select(bill_runs.c.month).where(bill_runs.c.month == month_key(m))) is not None


async def _count(conn: AsyncConnection, m: Month) -> int:
    return int(await conn.scalar(
        sa.select(sa.func.count()).select_from(bills).where(bills.c.month == month_key(m))
    ) or 0)


def _insert(conn: AsyncConnection) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)


async def run_month(
    db: Database,
    m: Month,
    catalog: Catalog,
    tz: tzinfo,
    *,
    bill_day_of_month: int = 3,
    policy: Policy | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Issue every bill of month m not issued yet (B6)."""
    policy = policy or Policy()
    key = month_key(m)
    end = month_start(*next_month(*m), tz)
    async with db.read() as conn:
        now = await clock.now(conn)
        if now < bill_day(m, tz, bill_day_of_month):
            raise Refused(
                f"the bills for {key} are issued on "
                f"{iso(bill_day(m, tz, bill_day_of_month), tz)[:10]}; it is "
                f"{iso(now, tz)[:10]}", rule="B6")
        before = await _count(conn, m)
        if await _completed(conn, m):
            return RunResult(key, before, 0)
        total = int(await conn.scalar(
            sa.select(sa.func.count()).select_from(apps_table)
            .where(apps_table.c.created_at < end)) or 0)
    done = 0
    last = 0
    while True:
        async with db.read() as conn:
            ids = [int(r) for r in await conn.scalars(
                sa.select(apps_table.c.sdkappid)
                .where(apps_table.c.created_at < end, apps_table.c.sdkappid > last)
                .order_by(apps_table.c.sdkappid).limit(BATCH))]
            if not ids:
                break
            last = ids[-1]
            billed = set(await conn.scalars(
                sa.select(bills.c.sdkappid)
                .where(bills.c.sdkappid.in_(ids), bills.c.month == key)))
            todo = [i for i in ids if i not in billed]
            lines_of: dict[int, list[tuple[datetime, AppPlan]]] = defaultdict(list)
            if todo:
                # Snapshots repeat (a few hundred configurations in a batch of ~13,000
                # events): read each one's JSON text and decode it once per batch.
                plan_of: dict[str, AppPlan] = {}
                for sdkappid, at, text in await conn.execute(
                    sa.select(plan_events.c.sdkappid, plan_events.c.at,
                              sa.cast(plan_events.c.after, sa.Text))
                    .where(plan_events.c.sdkappid.in_(todo), plan_events.c.at < end)
                    .order_by(plan_events.c.sdkappid, plan_events.c.seq)
                ):
                    plan = plan_of.get(text)
                    if plan is None:
                        plan = plan_of[text] = AppPlan.from_json(json.loads(text))
                    lines_of[int(sdkappid)].append((at, plan))
                used = await daily_usage(conn, todo, m, tz)
        rows: list[dict[str, Any]] = []
        for sdkappid in todo:
            tl = lines_of[sdkappid]
            if not billing.billable(tl, *m, tz, catalog):
                continue
            lines = billing.bill_lines(tl, used.get(sdkappid, []), catalog, *m, tz, policy)
            rows.append({
                "number": f"{sdkappid}-{m[0]:04d}{m[1]:02d}",
                "sdkappid": sdkappid,
                "month": key,
                "issued_at": now,
                "total": billing.total(lines),
                "lines": [_line_json(x, tz) for x in lines],
            })
        if rows:
            async with db.write() as conn:
                await conn.execute(_insert(conn)(bills).on_conflict_do_nothing(), rows)
        done += len(ids)
        if progress:
            progress(done, total)
    async with db.write() as conn:
        after = await _count(conn, m)
        await conn.execute(
            _insert(conn)(bill_runs).values(month=key, finished_at=now, bills_issued=after)
            .on_conflict_do_nothing())
    metrics.bill_run(after - before)
    return RunResult(key, after, after - before)


async def due_months(db: Database, tz: tzinfo, bill_day_of_month: int) -> list[Month]:
    """Months whose bill day has passed and whose run has not finished."""
    async with db.read() as conn:
        now = await clock.now(conn)
        first = await conn.scalar(sa.select(sa.func.min(apps_table.c.created_at)))
        if first is None:
            return []
        finished = set(await conn.scalars(sa.select(bill_runs.c.month)))
    out: list[Month] = []
    m = month_of(first, tz)
    while bill_day(m, tz, bill_day_of_month) <= now:
        if month_key(m) not in finished:
            out.append(m)
        m = next_month(*m)
    return out


async def get(conn: AsyncConnection, sdkappid: int, m: Month, tz: tzinfo) -> dict[str, Any]:
    await apps.get(conn, sdkappid)
    row = (await conn.execute(
        sa.select(bills).where(bills.c.sdkappid == sdkappid, bills.c.month == month_key(m))
    )).first()
    if row is None:
        raise NotFound(f"no bill for app {sdkappid} and {month_key(m)}", rule="B6")
    return {
        "sdkappid": int(row.sdkappid),
        "month": row.month,
        "number": row.number,
        "issued_at": iso(row.issued_at, tz),
        "lines": row.lines,
        "total": str(row.total),
    }


async def list_for(conn: AsyncConnection, sdkappid: int) -> list[dict[str, str]]:
    await apps.get(conn, sdkappid)
    rows = await conn.execute(
        sa.select(bills.c.month, bills.c.number, bills.c.total)
        .where(bills.c.sdkappid == sdkappid).order_by(bills.c.month))
    return [{"month": r.month, "number": r.number, "total": str(r.total)} for r in rows]


def to_csv(bill: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    fields = ["item", "level", "description", "period_start", "period_end", "quantity",
              "unit_price", "amount"]
    w.writerow(["number", *fields])
    for line in bill["lines"]:
        w.writerow([bill["number"], *(line[f] for f in fields)])
    w.writerow([bill["number"], "total", "", "", "", "", "", "", bill["total"]])
    return buf.getvalue()


async def preview(
    conn: AsyncConnection,
    sdkappid: int,
    op: Operation,
    catalog: Catalog,
    tz: tzinfo,
    policy: Policy,
) -> dict[str, Any]:
    """B7: the cost of an operation before it is made, from the same engine as bills.

    The operation is decided by the same rules as the real one: a preview of a change
    the rules refuse is that refusal.
    """
    app = await apps.get(conn, sdkappid)
    now = await clock.now(conn)
    records = await apps.month_records(conn, sdkappid, now, tz)
    decision = plans.decide(op, app.name, app.plan, records, now, tz, catalog)
    p = billing.preview(await timeline(conn, sdkappid), decision.after, now, catalog, tz,
                        policy)
    return {
        "this_month": str(p.this_month),
        "monthly_from_next_month": str(p.monthly_from_next_month),
        "lines": [_line_json(x, tz) for x in p.lines],
    }
