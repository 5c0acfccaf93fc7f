"""Crash safety of the bill run (issue 7, B6): `imcloud bill run` SIGKILLed at random
moments, again and again, then rerun to completion — on SQLite and PostgreSQL.

The database holds 3,000 apps (100 per loop past 30) with four months of plan history
(every event decided by the real rules, `imcloud.plans.decide`) and daily usage with
overage; four months are due. A copy of it gets one clean `imcloud bill run`. The original gets
IMCLOUD_TEST_CRASH_LOOPS (default 20) runs killed with SIGKILL — most just after a
random number of bills have landed (so mid-run, between or inside batch transactions),
some at a random moment after the start — and then one run to completion. Afterwards
both databases hold exactly the same bills (one per app and month: number, issue time,
lines, total) and the same completed runs.

The killed runs are the real CLI with a smaller `services.bills.BATCH` (as the other
bill-run tests set it), so the apps give a couple of hundred commit points,
each started ahead while the one before runs (test_crash_safety.warm); the clean run
and the final run are `imcloud bill run` exactly as shipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from imcloud import plans
from imcloud.catalog import ITEM_KEYS, load
from imcloud.errors import Refused
from imcloud.plans import AppPlan, ChangeRecord, Configure, Disable, Operation, Upgrade
from imcloud.store.db import Database
from imcloud.store.tables import (
    apps,
    bill_runs,
    bills,
    console_accounts,
    im_app_counters,
    plan_events,
    usage_daily,
)
from tests.conftest import Cli, _pg_admin, _pg_url_for, need_postgres, run
from tests.integration.test_crash_safety import go, warm

LOOPS = int(os.environ.get("IMCLOUD_TEST_CRASH_LOOPS", "20"))
CATALOG = load()
APPS = max(3000, 100 * LOOPS)  # work left for every kill
MONTHS = [(2019, m) for m in (1, 2, 3, 4)]
CLOCK = "2019-05-04"  # every month above is due (bill day 3)
BATCH = 40  # apps per batch in the killed runs
IMCLOUD = str(Path(sys.executable).with_name("imcloud"))


# ------------------------------------------------------------------ the data


class History:
    """One app's plan history, each operation decided by the real rules."""

    def __init__(self, rng: random.Random, name: str, created: datetime):
        self.rng = rng
        self.name = name
        self.plan = plans.initial_plan(CATALOG)
        self.events: list[dict[str, Any]] = [
            self._event(created, "create", None, self.plan, False, [])
        ]
        self.records: list[ChangeRecord] = []

    @staticmethod
    def _event(
        at: datetime,
        op: str,
        before: AppPlan | None,
        after: AppPlan,
        version: bool,
        items: list[str],
    ) -> dict[str, Any]:
        return {
            "at": at,
            "operation": op,
            "before": before.to_json() if before else None,
            "after": after.to_json(),
            "version_changed": version,
            "items_changed": items,
        }

    def attempt(self, op: Operation, at: datetime) -> None:
        month = (at.year, at.month)
        records = [r for r in self.records if (r.at.year, r.at.month) == month]
        try:
            d = plans.decide(op, self.name, self.plan, records, at, UTC, CATALOG)
        except Refused:
            return
        self.events.append(
            self._event(
                at, d.operation, d.before, d.after, d.version_changed, sorted(d.items_changed)
            )
        )
        self.records.append(ChangeRecord(at, d.version_changed, d.items_changed))
        self.plan = d.after

    def value(self, key: str, edition: str) -> Any:
        offer = CATALOG.offer(key, edition)
        if isinstance(offer.free, bool):
            return self.rng.random() < 0.5
        if offer.steps:
            return self.rng.choice([offer.free, *(s for s, _ in offer.steps)])
        assert offer.max is not None
        return self.rng.choice([offer.free, offer.max, (offer.free + offer.max) // 2])

    def some_items(self, edition: str, k: int) -> dict[str, Any]:
        offered = [key for key in ITEM_KEYS if CATALOG.offer(key, edition).offered]
        return {key: self.value(key, edition) for key in self.rng.sample(offered, k)}

    def random_op(self) -> Operation:
        edition = self.plan.edition
        if edition == "trial":
            target = self.rng.choice(["pro", "pro", "flagship"])
            return Upgrade(target, self.some_items(target, self.rng.randint(0, 2)))
        r = self.rng.random()
        if r < 0.01:
            return Disable(self.name)
        if r < 0.08:
            return Configure("trial", {})
        if r < 0.2:
            target = "flagship" if edition == "pro" else "pro"
            return Configure(target, self.some_items(target, self.rng.randint(0, 1)))
        return Configure(None, self.some_items(edition, 1))


def _moments(rng: random.Random, month: tuple[int, int], after: datetime, k: int) -> list[datetime]:
    start = datetime(*month, 1, tzinfo=UTC)
    end = datetime(month[0] + month[1] // 12, month[1] % 12 + 1, 1, tzinfo=UTC)
    lo = max(start, after + timedelta(seconds=1))
    return sorted(lo + (end - lo) * rng.random() for _ in range(k))


async def generate(db_url: str, seed: int) -> int:
    """APPS apps created in January 2019, their histories and usage; how many events."""
    rng = random.Random(seed)
    db = Database(db_url)
    owners, app_rows, counter_rows, event_rows, usage_rows = [], [], [], [], []
    for i in range(APPS):
        if i % 250 == 0:  # R8: at most 300 apps per console account
            owners.append(
                {
                    "id": 100 + i // 250,
                    "username": f"crash-owner-{i // 250}",
                    "password_hash": None,
                    "is_admin": False,
                    "created_at": datetime(2019, 1, 1, tzinfo=UTC),
                }
            )
        sdkappid = 1_400_000_000 + i
        created = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(9 * 86400))
        h = History(rng, f"crash-{i}", created)
        for month in MONTHS:
            k = rng.choice([0, 1, 1, 2, 3]) if month > MONTHS[0] or rng.random() < 0.15 else 1
            for at in _moments(rng, month, h.events[-1]["at"], k):
                h.attempt(h.random_op(), at)
            first = date(*month, 1)
            for day in rng.sample(range(28), 2):
                usage_rows.append(
                    {
                        "sdkappid": sdkappid,
                        "day": first + timedelta(days=day),
                        "dau": rng.randrange(10_001, 45_000)
                        if rng.random() < 0.3
                        else rng.randrange(10, 5000),
                        "groups": rng.randrange(100_001, 250_000)
                        if rng.random() < 0.1
                        else rng.randrange(0, 5000),
                        "av_rooms": rng.randrange(0, 60),
                    }
                )
        plan = h.plan
        app_rows.append(
            {
                "sdkappid": sdkappid,
                "name": h.name,
                "secret_key": f"{rng.getrandbits(256):064x}",
                "admin_identifier": "administrator",
                "owner_id": owners[-1]["id"],
                "created_at": created,
                "status": plan.status,
                "service_version": plan.edition,
                **dict(plan.items),
                "revision": len(h.events),
            }
        )
        counter_rows.append(
            {
                "sdkappid": sdkappid,
                "accounts": 0,
                "groups": 0,
                "av_rooms": 0,
                "day": None,
                "net_new_groups": 0,
            }
        )
        event_rows += [
            {"sdkappid": sdkappid, "seq": n, "actor": "test", **e}
            for n, e in enumerate(h.events, 1)
        ]
    try:
        async with db.write() as conn:
            for table, rows in (
                (console_accounts, owners),
                (apps, app_rows),
                (im_app_counters, counter_rows),
                (plan_events, event_rows),
                (usage_daily, usage_rows),
            ):
                await conn.execute(sa.insert(table), rows)
    finally:
        await db.dispose()
    return len(event_rows)


def copy_database(db_url: str, tmp_path: Path) -> str:
    """An identical copy, to bill cleanly."""
    url = make_url(db_url)
    if url.drivername.startswith("sqlite"):
        target = tmp_path / "clean.db"
        src, dst = sqlite3.connect(str(url.database)), sqlite3.connect(target)
        src.backup(dst)
        src.close()
        dst.close()
        return f"sqlite:///{target}"
    name = f"{url.database}_clean"
    run(_pg_admin(need_postgres(), f"CREATE DATABASE {name} TEMPLATE {url.database}"))
    return _pg_url_for(need_postgres(), name)


def drop_copy(copy_url: str) -> None:
    url = make_url(copy_url)
    if url.drivername.startswith("postgresql"):
        run(_pg_admin(need_postgres(), f"DROP DATABASE IF EXISTS {url.database} WITH (FORCE)"))


# ------------------------------------------------------------------ reading bills


async def _bills(db: Database) -> tuple[dict[tuple[int, str], Any], dict[str, Any]]:
    async with db.read() as conn:
        issued = {
            (int(r.sdkappid), r.month): (r.number, r.issued_at, r.total, r.lines)
            for r in await conn.execute(sa.select(bills))
        }
        runs = {
            r.month: (r.finished_at, r.bills_issued)
            for r in await conn.execute(sa.select(bill_runs))
        }
        counts = (
            sa.select(sa.func.count().label("n"))
            .select_from(bills)
            .group_by(bills.c.sdkappid, bills.c.month)
            .subquery()
        )
        per_app_month = await conn.scalar(sa.select(sa.func.max(counts.c.n)))
    assert per_app_month in (None, 1), f"{per_app_month} bills for one app and month"
    return issued, runs


def read_bills(db_url: str) -> tuple[dict[tuple[int, str], Any], dict[str, Any]]:
    async def main() -> tuple[dict[tuple[int, str], Any], dict[str, Any]]:
        db = Database(db_url)
        try:
            return await _bills(db)
        finally:
            await db.dispose()

    return run(main())


# ------------------------------------------------------------------ the test


def bill_run(db_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [IMCLOUD, "bill", "run", "--json", "--db", db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def killable_run(db_url: str) -> subprocess.Popen[bytes]:
    """`imcloud bill run` with small batches, started ahead; `go` runs it."""
    return warm(
        ["bill", "run", "--json", "--db", db_url],
        prelude=f"from imcloud.services import bills\nbills.BATCH = {BATCH}",
    )


def kill_mid_run(
    proc: subprocess.Popen[bytes], rng: random.Random, counter: Any
) -> tuple[int, int]:
    """Run a bill run started ahead, SIGKILL it; (bills before, bills after)."""
    before = counter()
    go(proc)
    if rng.random() < 0.2:  # at a random moment from the start (opening the database,
        time.sleep(rng.uniform(0, 0.4))  # reading the months due, a first batch)
    else:  # once a random number of bills have landed: mid-run
        target = before + rng.randint(1, 2 * BATCH)
        while counter() < target and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate()
    assert not finished, f"the run ended before it was killed: {out!r} {err!r}"
    return before, counter()


def test_B6_bill_run_sigkilled_mid_run_then_rerun_equals_a_clean_run(
    imcloud: Cli, tmp_path: Path
) -> None:
    imcloud("init", "--simulated-clock", "2019-01-01")
    seed = random.randrange(2**32)
    run(generate(imcloud.db_url, seed))
    imcloud("clock", "set", CLOCK)
    clean_url = copy_database(imcloud.db_url, tmp_path)
    try:
        clean = bill_run(clean_url)
        out, err = clean.communicate(timeout=300)
        assert clean.returncode == 0, err
        assert [r["month"] for r in json.loads(out)] == ["2019-01", "2019-02", "2019-03", "2019-04"]
        expected = read_bills(clean_url)
    finally:
        drop_copy(clean_url)
    assert len(expected[0]) > len(MONTHS) * APPS * 3 // 4, len(expected[0])

    rng = random.Random(seed)
    runner = asyncio.Runner()
    db = Database(imcloud.db_url)

    async def count() -> int:
        async with db.read() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(bills)) or 0)

    procs = [killable_run(imcloud.db_url)]
    progress = []
    try:
        for n in range(LOOPS):
            if n + 1 < LOOPS:  # the next one does its imports meanwhile
                procs.append(killable_run(imcloud.db_url))
            progress.append(kill_mid_run(procs[n], rng, lambda: runner.run(count())))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        runner.run(db.dispose())
        runner.close()
    # the kills landed mid-run: bills before and after most of them, and work left
    assert sum(1 for a, b in progress if 0 < a < b) >= LOOPS // 2, (seed, progress)
    assert progress[-1][1] < len(expected[0]), (seed, progress)

    final = bill_run(imcloud.db_url)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    issued, runs = read_bills(imcloud.db_url)
    assert runs == expected[1], seed
    assert issued.keys() == expected[0].keys(), seed
    differ = [k for k in issued if issued[k] != expected[0][k]]
    assert not differ, (seed, differ[:5], [issued[k] for k in differ[:1]])
