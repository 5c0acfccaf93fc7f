"""Bill runs under repetition, concurrency and crashes, and previews against the bills
they predict — on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from imcloud import billing
from imcloud.billing import Policy
from imcloud.catalog import load
from imcloud.clock import month_of, month_start, next_month
from imcloud.errors import Refused
from imcloud.plans import Configure, Operation, Upgrade
from imcloud.services import apps, bills, clock, usage
from imcloud.services.usage import month_days
from imcloud.store.db import Database
from imcloud.store.tables import bills as bills_table
from tests.conftest import Cli, run
from tests.integration.test_serve import free_port, wait_until_up

CATALOG = load()
POLICY = Policy()


async def make_postpaid_apps(db: Database, n: int, *, prefix: str = "app") -> list[int]:
    """n apps upgraded to Pro with AV rooms on, in one transaction."""
    ids = []
    async with db.write() as conn:
        for i in range(n):
            app = await apps.create(conn, f"{prefix}{i}", CATALOG, actor="test")
            await apps.apply(conn, app.sdkappid, Upgrade("pro", {"unlimited_av_rooms": True}),
                             CATALOG, UTC, actor="test")
            ids.append(app.sdkappid)
    return ids


async def bills_per_app(db: Database, month: str) -> Counter[int]:
    async with db.read() as conn:
        rows = await conn.scalars(sa.select(bills_table.c.sdkappid)
                                  .where(bills_table.c.month == month))
        return Counter(int(r) for r in rows)


def test_B6_concurrent_and_repeated_runs_issue_one_bill_per_app(
    imcloud: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    imcloud("init", "--simulated-clock", "2019-01-10")
    db_url = imcloud.db_url

    async def setup() -> list[int]:
        db = Database(db_url)
        try:
            return await make_postpaid_apps(db, 40)
        finally:
            await db.dispose()

    ids = run(setup())
    imcloud("clock", "set", "2030-01-03")
    # a fresh month for each example (a finished month is never run again)
    months = iter([(y, m) for y in range(2019, 2030) for m in range(1, 13)][1:] * 100)

    @given(runners=st.integers(2, 4), batch=st.integers(1, 25), repeat=st.booleans())
    def prop(runners: int, batch: int, repeat: bool) -> None:
        month = next(months)
        key = bills.month_key(month)
        monkeypatch.setattr(bills, "BATCH", batch)

        async def main() -> Counter[int]:
            dbs = [Database(db_url) for _ in range(runners)]
            try:
                async def one(db: Database) -> Any:
                    return await bills.run_month(db, month, CATALOG, UTC, policy=POLICY)

                await asyncio.gather(*(one(db) for db in dbs))
                if repeat:
                    await one(dbs[0])
                return await bills_per_app(dbs[0], key)
            finally:
                for db in dbs:
                    await db.dispose()

        counts = run(main())
        assert set(counts) == set(ids) and set(counts.values()) == {1}, counts

    prop()
    # Pro + AV rooms from February on: 299.98 every month (hand-computed)
    assert {b["total"] for b in imcloud("bill", "list", str(ids[0]))[1:]} == {"299.98"}


def test_B6_two_bill_run_processes_at_once(imcloud: Cli) -> None:
    imcloud("init", "--simulated-clock", "2019-01-10")

    async def setup() -> list[int]:
        db = Database(imcloud.db_url)
        try:
            return await make_postpaid_apps(db, 150)
        finally:
            await db.dispose()

    ids = run(setup())
    imcloud("clock", "set", "2019-03-03")
    exe = str(Path(sys.executable).with_name("imcloud"))
    procs = [
        subprocess.Popen([exe, "bill", "run", "--month", "2019-02", "--json", "--db",
                          imcloud.db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    counts = run(_counts(imcloud.db_url, "2019-02"))
    assert set(counts) == set(ids) and set(counts.values()) == {1}


async def _counts(url: str, month: str) -> Counter[int]:
    db = Database(url)
    try:
        return await bills_per_app(db, month)
    finally:
        await db.dispose()


def test_B6_bill_run_resumes_after_a_crash(imcloud: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    imcloud("init", "--simulated-clock", "2019-01-10")

    async def main() -> tuple[Counter[int], list[int], int]:
        db = Database(imcloud.db_url)
        try:
            ids = await make_postpaid_apps(db, 30)
            async with db.write() as conn:
                await clock.set_time(conn, datetime(2019, 3, 3, tzinfo=UTC))
            monkeypatch.setattr(bills, "BATCH", 7)

            def crash(done: int, total: int) -> None:
                if done >= 14:
                    raise KeyboardInterrupt("killed mid-run")

            with pytest.raises(KeyboardInterrupt):
                await bills.run_month(db, (2019, 2), CATALOG, UTC, policy=POLICY,
                                      progress=crash)
            partial = len(await bills_per_app(db, "2019-02"))
            result = await bills.run_month(db, (2019, 2), CATALOG, UTC, policy=POLICY)
            assert result.new == 30 - partial
            return await bills_per_app(db, "2019-02"), ids, partial
        finally:
            await db.dispose()

    counts, ids, partial = run(main())
    assert partial == 14  # two batches landed before the crash
    assert set(counts) == set(ids) and set(counts.values()) == {1}


# ------------------------------------------------------------------ B7 against bills

ops = st.lists(
    st.tuples(
        st.integers(0, 27),  # day of the month
        st.sampled_from([None, None, "pro", "flagship", "trial"]),
        st.fixed_dictionaries({}, optional={
            "unlimited_av_rooms": st.booleans(),
            "content_filtering": st.booleans(),
            "group_member_limit": st.sampled_from([200, 1000, 2000, 4000]),
            "history_days": st.sampled_from([7, 30, 90, 360]),
        }),
    ),
    min_size=1,
    max_size=5,
)


def test_B7_preview_equals_the_bill_once_the_month_closes(imcloud: Cli) -> None:
    """Every change in a month is previewed, then made; when the month closes, its bill
    is the bill the month had before the first change plus every preview's this_month,
    and next month's bill is the last preview's monthly_from_next_month."""
    imcloud("init", "--simulated-clock", "2019-01-01")
    counter = iter(range(10**9))
    checked = Counter[str]()

    @given(program=ops, start_on_pro=st.booleans(), daily=st.booleans())
    def prop(program: list[tuple[int, Any, dict[str, Any]]], start_on_pro: bool,
             daily: bool) -> None:
        policy = Policy("daily" if daily else "month")

        async def main() -> None:
            db = Database(imcloud.db_url)
            try:
                async with db.write() as conn:
                    now = await clock.now(conn)
                    app = await apps.create(conn, f"p{next(counter)}", CATALOG, actor="t")
                    if start_on_pro:
                        await apps.apply(conn, app.sdkappid, Upgrade("pro"), CATALOG, UTC,
                                         actor="t")
                # the month under test starts at the next 1st
                m = next_month(*month_of(now, UTC))
                start = month_start(*m, UTC)
                async with db.write() as conn:
                    await clock.set_time(conn, start)
                    baseline = billing.total(billing.bill_lines(
                        await bills.timeline(conn, app.sdkappid), [], CATALOG, *m, UTC, policy))
                expected = baseline
                last_monthly: Decimal | None = None
                for day, edition, items in sorted(program, key=lambda p: p[0]):
                    async with db.write() as conn:
                        t = max(await clock.now(conn), start + timedelta(days=day, hours=9))
                        await clock.set_time(conn, t)
                        current = await apps.get(conn, app.sdkappid)
                        op: Operation = (
                            Upgrade(edition if edition in ("pro", "flagship") else "pro", items)
                            if current.plan.edition == "trial" else Configure(edition, items))
                        try:
                            p = await bills.preview(conn, app.sdkappid, op, CATALOG, UTC, policy)
                        except Refused:
                            continue
                        await apps.apply(conn, app.sdkappid, op, CATALOG, UTC, actor="t")
                    expected += Decimal(p["this_month"])
                    last_monthly = Decimal(p["monthly_from_next_month"])
                # close the month and the next one; bill them through the real run
                after = month_start(*next_month(*next_month(*m)), UTC) + timedelta(days=5)
                async with db.write() as conn:
                    await clock.set_time(conn, after)
                for month in (m, next_month(*m)):
                    await bills.run_month(db, month, CATALOG, UTC, policy=policy)
                async with db.read() as conn:
                    listed = {b["month"]: Decimal(b["total"])
                              for b in await bills.list_for(conn, app.sdkappid)}
                assert listed.get(bills.month_key(m), Decimal("0.00")) == expected
                if last_monthly is not None:
                    checked["changed"] += 1
                    assert listed.get(bills.month_key(next_month(*m)),
                                      Decimal("0.00")) == last_monthly
                # issued bills never change: not by later usage, changes or reruns (B6)
                async with db.read() as conn:
                    issued = await bills.list_for(conn, app.sdkappid)
                async with db.write() as conn:
                    await usage.record(conn, app.sdkappid, month_days(*m, UTC)[0], dau=99_999,
                                       groups=999_999)
                    try:
                        current = await apps.get(conn, app.sdkappid)
                        if current.plan.edition != "trial":
                            await apps.apply(conn, app.sdkappid, Configure(
                                None, {"content_filtering": not current.plan.items[
                                    "content_filtering"]}), CATALOG, UTC, actor="t")
                    except Refused:
                        pass
                for month in (m, next_month(*m)):
                    await bills.run_month(db, month, CATALOG, UTC, policy=policy)
                async with db.read() as conn:
                    assert await bills.list_for(conn, app.sdkappid) == issued
            finally:
                await db.dispose()

        run(main())

    prop()
    assert checked["changed"] > 0


# ------------------------------------------------------------------ the server bills


def test_B6_server_issues_bills_when_the_clock_passes_bill_day(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    imcloud = Cli(db)
    imcloud("init", "--simulated-clock", "2019-02-01")
    app = str(imcloud("app", "create", "auto")["sdkappid"])
    imcloud("app", "upgrade", app, "--edition", "flagship")
    port = free_port()
    exe = str(Path(sys.executable).with_name("imcloud"))
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--db", db],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "IMCLOUD_BILL_CHECK_SECONDS": "0.2"},
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
        imcloud("clock", "set", "2019-04-03")  # the CLI moves the clock; the server notices
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(imcloud("bill", "list", app)) < 2:
            time.sleep(0.2)
        assert imcloud("bill", "list", app) == [
            {"month": "2019-02", "number": f"{app}-201902", "total": "0.00"},
            {"month": "2019-03", "number": f"{app}-201903", "total": "449.99"},
        ]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
