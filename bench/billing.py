"""Benchmark: one month's bill run over 10,000 and 100,000 postpaid apps (SPEC B6).

For each size N this script

1. builds a SQLite database under /tmp: `imcloud init` for the schema, then a fast bulk
   insert with the stdlib `sqlite3` module of N apps, each with a year (2019) of plan
   history (~12 events, every one decided by the real rules in `imcloud.plans`, so the
   history obeys R1-R8) and 365 rows of daily usage (some above the free DAU and group
   counts, so overage lines appear). A fixed seed makes the data the same on every run.
   Generation time is reported but is not what the benchmark measures.
2. moves the clock to 2020-01-05 and times `imcloud bill run --month 2019-12 --json` as a
   child process (the real CLI path): wall time and that child's peak RSS (os.wait4 in
   a fresh, tiny wrapper interpreter, so each size is measured on its own and the
   figure is not inflated by this generator process).
3. checks one bill per app was issued, and spot-checks bills (totals = sum of lines,
   non-zero, an edition line priced as in the catalog; one read back through
   `imcloud bill show`).
4. prints one JSON object with the figures and the machine.

Run it with the project's interpreter:

    .venv/bin/python bench/billing.py                   # 10,000 and 100,000 apps
    .venv/bin/python bench/billing.py --apps 1000       # one size (repeatable)
    .venv/bin/python bench/billing.py --keep /tmp/bench # keep the databases
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from imcloud import catalog as catalog_mod
from imcloud import plans
from imcloud.catalog import ITEM_KEYS, Catalog
from imcloud.errors import Refused
from imcloud.plans import AppPlan, ChangeRecord, Configure, Disable, Upgrade

YEAR = 2019
BILL_MONTH = "2019-12"
CLOCK_AT = "2020-01-05"
DEFAULT_SIZES = (10_000, 100_000)
APPS_PER_OWNER = 250  # below the 300-app limit per console account (R8)
ACTOR = "console:bench"
TZ = UTC  # the default billing time zone

DAYS = [date(YEAR, 1, 1) + timedelta(days=i) for i in range(365)]
DAY_TEXT = [d.isoformat() for d in DAYS]  # SQLAlchemy's Date on SQLite: YYYY-MM-DD


def db_time(t: datetime) -> str:
    """SQLAlchemy's DateTime on SQLite: naive UTC 'YYYY-MM-DD HH:MM:SS.ffffff'."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def dumps(value: Any) -> str:
    """SQLAlchemy's JSON type on SQLite stores json.dumps with default separators."""
    return json.dumps(value)


# ----------------------------------------------------------------- plan histories


class History:
    """Builds one app's plan history with the real rules (plans.decide)."""

    def __init__(self, rng: random.Random, cat: Catalog, name: str, created: datetime):
        self.rng = rng
        self.cat = cat
        self.name = name
        self.plan = plans.initial_plan(cat)
        self.events: list[tuple[datetime, str, AppPlan | None, AppPlan, bool, list[str]]] = [
            (created, "create", None, self.plan, False, [])
        ]
        self.records: list[ChangeRecord] = []
        self.month = (created.year, created.month)

    @property
    def last_at(self) -> datetime:
        return self.events[-1][0]

    def try_op(self, op: Any, at: datetime) -> bool:
        """Apply op at `at` if the rules allow it; False (and nothing changes) if not."""
        if (at.year, at.month) != self.month:
            self.month = (at.year, at.month)
            self.records = []
        try:
            d = plans.decide(op, self.name, self.plan, self.records, at, TZ, self.cat)
        except Refused:
            return False
        self.events.append((at, d.operation, d.before, d.after, d.version_changed,
                            sorted(d.items_changed)))
        self.records.append(ChangeRecord(at, d.version_changed, d.items_changed))
        self.plan = d.after
        return True

    # -- random operations

    def random_value(self, item: str, edition: str) -> Any:
        offer = self.cat.offer(item, edition)
        current = self.plan.items[item] if self.plan.edition == edition else None
        if isinstance(offer.free, bool):
            return not current
        if offer.steps:
            choices = [offer.free, *(s for s, _ in offer.steps)]
        else:
            assert offer.max is not None
            lo, hi = int(offer.free), offer.max
            choices = sorted({lo, lo + (hi - lo) // 4, (lo + hi) // 2, hi})
        choices = [c for c in choices if c != current]
        return self.rng.choice(choices)

    def offered(self, edition: str) -> list[str]:
        return [k for k in ITEM_KEYS if self.cat.offer(k, edition).offered]

    def item_change(self, at: datetime, exclude: set[str]) -> bool:
        edition = self.plan.edition
        keys = [k for k in self.offered(edition) if k not in exclude]
        self.rng.shuffle(keys)
        for key in keys:
            if self.try_op(Configure(items={key: self.random_value(key, edition)}), at):
                return True
        return False

    def version_change(self, at: datetime, target: str) -> bool:
        """Pro <-> Flagship (or to Trial); name items that would not fit (R4a)."""
        named: dict[str, Any] = {}
        for key in ITEM_KEYS:
            offer = self.cat.offer(key, target)
            value = self.plan.items[key]
            if (offer.offered and offer.max is not None and not isinstance(value, bool)
                    and value > offer.max):
                named[key] = offer.max
        if target != "trial" and self.rng.random() < 0.25:
            key = self.rng.choice(self.offered(target))
            named.setdefault(key, self.random_value(key, target))
        return self.try_op(Configure(edition=target, items=named), at)


def month_times(rng: random.Random, year: int, month: int, k: int, after: datetime
                ) -> list[datetime]:
    """k sorted random moments in the month, all after `after`."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    lo = max(start, after + timedelta(seconds=1))
    span = int((end - lo).total_seconds())
    if span < k:
        return []  # no room left in the month
    picks = sorted(rng.randrange(span) for _ in range(k))
    out, last = [], after
    for p in picks:
        t = max(lo + timedelta(seconds=p, microseconds=rng.randrange(1_000_000)),
                last + timedelta(seconds=1))
        out.append(t)
        last = t
    return out


def build_history(rng: random.Random, cat: Catalog, name: str) -> tuple[History, int, int]:
    """A year on the platform; returns the history, the upgrade day index and the day
    index from which the app is disabled (365 if never)."""
    created = datetime(YEAR, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(86_400))
    h = History(rng, cat, name, created)
    # January: upgrade from Trial, sometimes with items, sometimes an item right after.
    (up_at,) = month_times(rng, YEAR, 1, 1, created + timedelta(days=1))
    edition = "pro" if rng.random() < 0.65 else "flagship"
    items: dict[str, Any] = {}
    if rng.random() < 0.3:
        key = rng.choice(h.offered(edition))
        items[key] = h.random_value(key, edition)
    ok = h.try_op(Upgrade(edition=edition, items=items), up_at)
    assert ok, "upgrade from Trial is always allowed"
    if rng.random() < 0.2:
        for t in month_times(rng, YEAR, 1, 1, h.last_at):
            h.item_change(t, set())
    upgrade_day = (up_at.date() - DAYS[0]).days
    # February..December: about one change a month.
    bounce = rng.randrange(3, 10) if rng.random() < 0.02 else None  # Trial for a month
    disable = rng.random() < 0.01
    disabled_day = 365
    for month in range(2, 13):
        if bounce is not None and month == bounce:
            (t,) = month_times(rng, YEAR, month, 1, h.last_at)
            h.version_change(t, "trial")
            continue
        if bounce is not None and month == bounce + 1:
            (t,) = month_times(rng, YEAR, month, 1, h.last_at)
            h.try_op(Upgrade(edition=rng.choice(["pro", "flagship"])), t)
            continue
        if rng.random() < 0.12:
            continue  # a quiet month
        extra = rng.random() < 0.06
        times = month_times(rng, YEAR, month, 2 if extra else 1, h.last_at)
        changed: set[str] = set()
        for i, t in enumerate(times):
            if i == 0 and rng.random() < 0.12:
                target = "flagship" if h.plan.edition == "pro" else "pro"
                if h.version_change(t, target):
                    continue
            if h.item_change(t, changed):
                changed.update(h.events[-1][5])
    for t in month_times(rng, YEAR, 12, 1, h.last_at) if disable else []:
        h.try_op(Disable(confirm=name), t)
        disabled_day = (t.date() - DAYS[0]).days + 1
    return h, upgrade_day, disabled_day


# ----------------------------------------------------------------- usage


def noise_profiles(rng: random.Random, count: int) -> list[list[float]]:
    """Daily multipliers: growth over the year, a weekly rhythm, day-to-day noise."""
    out = []
    for _ in range(count):
        growth = rng.uniform(0.6, 1.4)
        weekend = rng.uniform(0.7, 1.2)
        out.append([
            (1 + (growth - 1) * d / 364) * (weekend if DAYS[d].weekday() >= 5 else 1.0)
            * rng.uniform(0.8, 1.15)
            for d in range(365)
        ])
    return out


def usage_rows(rng: random.Random, sid: int, profiles: list[list[float]], upgrade_day: int,
               disabled_day: int) -> list[tuple[int, str, int, int, int]]:
    r = rng.random()
    dau_base = rng.uniform(8_000, 30_000) if r < 0.15 else 10 ** rng.uniform(1.5, 3.8)
    g = rng.random()
    groups_base = rng.uniform(60_000, 260_000) if g < 0.10 else 10 ** rng.uniform(1.5, 4.5)
    rooms = rng.randrange(0, 60)
    p1 = profiles[rng.randrange(len(profiles))]
    p2 = profiles[rng.randrange(len(profiles))]
    rows = [(sid, DAY_TEXT[d], int(dau_base * p1[d]), int(groups_base * p2[d]), rooms)
            for d in range(365)]
    for d in range(upgrade_day):  # Trial caps DAU at 100 and groups at 100
        _, day, dau, groups, av = rows[d]
        rows[d] = (sid, day, min(dau, 100), min(groups, 100), min(av, 10))
    for d in range(disabled_day, 365):  # nothing happens in a disabled app
        rows[d] = (sid, DAY_TEXT[d], 0, 0, 0)
    return rows


# ----------------------------------------------------------------- the database


def imcloud_bin() -> str:
    local = Path(sys.executable).with_name("imcloud")
    return str(local) if local.exists() else (shutil.which("imcloud") or "imcloud")


def cli(*args: str, db_url: str) -> str:
    r = subprocess.run([imcloud_bin(), *args, "--db", db_url], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"imcloud {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return r.stdout


def generate(path: Path, n: int, seed: int) -> dict[str, Any]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    t0 = time.perf_counter()
    cli("init", "--simulated-clock", f"{YEAR}-01-01", db_url=url)
    cat = catalog_mod.load()
    rng = random.Random(seed * 1_000_003 + n)
    profiles = noise_profiles(rng, 256)
    ids = sorted(1_400_000_000 + x for x in rng.sample(range(100_000_000), n))

    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")  # 256 MiB while generating
    con.execute("BEGIN")
    owners = (n + APPS_PER_OWNER - 1) // APPS_PER_OWNER
    owner_at = db_time(datetime(YEAR, 1, 1, tzinfo=UTC))
    con.executemany(
        "INSERT INTO console_accounts (id, username, password_hash, is_admin, created_at) "
        "VALUES (?, ?, NULL, 0, ?)",
        [(i + 2, f"bench-owner-{i + 1:05d}", owner_at) for i in range(owners)])
    events = usage = 0
    chunk_apps: list[tuple[Any, ...]] = []
    chunk_events: list[tuple[Any, ...]] = []
    chunk_usage: list[tuple[Any, ...]] = []

    def flush() -> None:
        con.executemany(
            "INSERT INTO apps (sdkappid, name, secret_key, admin_identifier, owner_id, "
            "created_at, status, service_version, unlimited_av_rooms, content_filtering, "
            "group_member_limit, groups_per_user, history_days, revision) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk_apps)
        con.executemany(
            "INSERT INTO plan_events (sdkappid, seq, at, actor, operation, before, after, "
            "version_changed, items_changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            chunk_events)
        con.executemany(
            "INSERT INTO usage_daily (sdkappid, day, dau, groups, av_rooms) "
            "VALUES (?, ?, ?, ?, ?)", chunk_usage)
        chunk_apps.clear()
        chunk_events.clear()
        chunk_usage.clear()

    for i, sid in enumerate(ids):
        name = f"bench-{i + 1:06d}"
        h, upgrade_day, disabled_day = build_history(rng, cat, name)
        last = h.plan
        chunk_apps.append((
            sid, name, f"{rng.getrandbits(256):064x}", "administrator",
            2 + i // APPS_PER_OWNER, db_time(h.events[0][0]), last.status, last.edition,
            int(bool(last.items["unlimited_av_rooms"])),
            int(bool(last.items["content_filtering"])), last.items["group_member_limit"],
            last.items["groups_per_user"], last.items["history_days"], len(h.events)))
        for seq, (at, op, before, after, vchanged, ichanged) in enumerate(h.events, 1):
            chunk_events.append((
                sid, seq, db_time(at), ACTOR, op,
                dumps(before.to_json() if before is not None else None),
                dumps(after.to_json()), int(vchanged), dumps(ichanged)))
        events += len(h.events)
        rows = usage_rows(rng, sid, profiles, upgrade_day, disabled_day)
        usage += len(rows)
        chunk_usage.extend(rows)
        if len(chunk_apps) >= 2000:
            flush()
    flush()
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    cli("clock", "set", CLOCK_AT, db_url=url)
    return {"events": events, "usage_rows": usage,
            "generate_seconds": round(time.perf_counter() - t0, 1),
            "db_mib": round(path.stat().st_size / 2**20)}


# ----------------------------------------------------------------- the measurement


# Linux gives a child, at exec, the peak RSS of the process it was forked from; forked
# from this (large) generator process, the bill run would report our memory, not its
# own. So a fresh, tiny interpreter starts the bill run and reports its rusage.
MEASURE = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
out = p.stdout.read()
_, status, usage = os.wait4(p.pid, 0)
print(json.dumps({"seconds": time.perf_counter() - t0, "maxrss_kib": usage.ru_maxrss,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "exit": os.waitstatus_to_exitcode(status), "output": out.decode()}))
"""


def timed_bill_run(db_url: str) -> tuple[float, float, float, Any]:
    """Wall time, CPU time and peak RSS (MiB) of exactly one `imcloud bill run` child."""
    cmd = [imcloud_bin(), "bill", "run", "--month", BILL_MONTH, "--json", "--db", db_url]
    r = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True,
                       text=True, check=True)
    m = json.loads(r.stdout)
    if m["exit"] != 0:
        raise SystemExit(f"bill run failed ({m['exit']}): {m['output']}")
    # ru_maxrss is in KiB on Linux
    return m["seconds"], m["cpu_seconds"], m["maxrss_kib"] / 1024, json.loads(m["output"])


def verify(path: Path, n: int, seed: int) -> dict[str, Any]:
    cat = catalog_mod.load()
    con = sqlite3.connect(path)
    bills = con.execute("SELECT count(*) FROM bills WHERE month = ?", (BILL_MONTH,)).fetchone()[0]
    if bills != n:
        raise SystemExit(f"{n} apps but {bills} bills for {BILL_MONTH}")
    totals = [Decimal(t) for (t,) in con.execute(
        "SELECT total FROM bills WHERE month = ?", (BILL_MONTH,))]
    overage = con.execute(
        "SELECT count(*) FROM bills WHERE month = ? AND lines LIKE '%_overage%'",
        (BILL_MONTH,)).fetchone()[0]
    fees = {e.name: e.base_fee for e in cat.editions.values()}
    rng = random.Random(seed)
    sample = rng.sample([r[0] for r in con.execute("SELECT sdkappid FROM apps")], 5)
    checked = []
    for sid in sample:
        total, lines_text = con.execute(
            "SELECT total, lines FROM bills WHERE sdkappid = ? AND month = ?",
            (sid, BILL_MONTH)).fetchone()
        lines = json.loads(lines_text)
        total = Decimal(total)
        edition = [x for x in lines if x["item"] == "edition"]
        if total <= 0 or sum(Decimal(x["amount"]) for x in lines) != total:
            raise SystemExit(f"implausible bill {sid}: {total} {lines}")
        if len(edition) != 1 or Decimal(edition[0]["amount"]) != fees[edition[0]["level"]]:
            raise SystemExit(f"bill {sid}: edition line not as in the catalog: {lines}")
        checked.append({"sdkappid": sid, "total": str(total),
                        "lines": [f"{x['item']}={x['level']}:{x['amount']}" for x in lines]})
    con.close()
    shown = json.loads(cli("bill", "show", str(sample[0]), "--month", BILL_MONTH, "--json",
                           db_url=f"sqlite:///{path}"))
    if shown["total"] != checked[0]["total"]:
        raise SystemExit(f"bill show disagrees: {shown['total']} != {checked[0]['total']}")
    return {"bills_with_overage": overage, "total_min": str(min(totals)),
            "total_max": str(max(totals)), "total_sum": str(sum(totals)),
            "spot_checks": checked}


def bench(n: int, workdir: Path, seed: int) -> dict[str, Any]:
    path = workdir / f"billing-{n}.db"
    print(f"[bench] generating {n:,} apps in {path}", file=sys.stderr, flush=True)
    gen = generate(path, n, seed)
    print(f"[bench] generated in {gen['generate_seconds']} s; bill run {BILL_MONTH}",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    cli("clock", "show", "--json", db_url=f"sqlite:///{path}")  # the CLI's fixed cost
    startup = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    seconds, cpu, rss, result = timed_bill_run(f"sqlite:///{path}")
    print(f"[bench] bill run {seconds:.1f} s ({cpu:.1f} s CPU), peak RSS {rss:.0f} MiB",
          file=sys.stderr, flush=True)
    checks = verify(path, n, seed)
    return {
        "apps": n,
        "events": gen["events"],
        "usage_rows": gen["usage_rows"],
        "db_mib": gen["db_mib"],
        "generate_seconds": gen["generate_seconds"],
        "bill_run_seconds": round(seconds, 2),
        "bill_run_cpu_seconds": round(cpu, 2),
        "apps_per_second": round(n / seconds),
        # other processes competing for the 2 cores show here (wall >> CPU time)
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cli_startup_seconds": round(startup, 2),
        "peak_rss_mib": round(rss, 1),
        "bills": result[0]["bills"] if result else 0,
        "bill_run_output": result,
        "checks": checks,
    }


def git_head() -> str | None:
    """The commit being measured (the project is installed editable: the tree is the code)."""
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                       text=True, check=False, cwd=Path(__file__).resolve().parent)
    return r.stdout.strip() or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apps", type=int, action="append",
                    help="number of apps (repeatable; default: 10000 and 100000)")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="build the databases in DIR and keep them (default: a temporary "
                         "directory under /tmp, removed afterwards)")
    ap.add_argument("--seed", type=int, default=20191201)
    args = ap.parse_args()
    sizes = args.apps or list(DEFAULT_SIZES)
    head_before = git_head()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        workdir = args.keep
    else:
        workdir = Path(tempfile.mkdtemp(prefix="imcloud-bench-", dir="/tmp"))
    try:
        results = [bench(n, workdir, args.seed) for n in sizes]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out: dict[str, Any] = {
        "benchmark": "billing",
        "month": BILL_MONTH,
        "command": f"imcloud bill run --month {BILL_MONTH} --json --db sqlite:///...",
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        # a different commit after the run means the code changed while it ran
        "git_head_before_after": [head_before, git_head()],
        "sizes": results,
    }
    if len(results) > 1:
        a, b = results[0], results[-1]
        out["scaling"] = {
            "apps_ratio": round(b["apps"] / a["apps"], 1),
            "time_ratio": round(b["bill_run_seconds"] / a["bill_run_seconds"], 2),
            "cpu_ratio": round(b["bill_run_cpu_seconds"] / a["bill_run_cpu_seconds"], 2),
            "rss_ratio": round(b["peak_rss_mib"] / a["peak_rss_mib"], 2),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
