"""Properties over random sequences of lifecycle operations and clock moves, stored in a
real database: R4 never violated, a disabled app never changes again, and replaying the
stored history gives exactly the stored current configuration.

The checks below are written independently of `imcloud.plans`: they read the stored
history and the `apps` row and judge them with their own small logic.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from datetime import UTC, timedelta
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from imcloud.catalog import ITEM_KEYS, load
from imcloud.errors import Refused
from imcloud.plans import Configure, Disable, Operation, Upgrade
from imcloud.services import accounts, apps, clock
from imcloud.store.db import Database
from imcloud.store.tables import apps as apps_table
from imcloud.store.tables import plan_events
from tests.conftest import Cli, run

CATALOG = load()

item_values = {
    "unlimited_av_rooms": st.booleans(),
    "content_filtering": st.booleans(),
    "group_member_limit": st.sampled_from([200, 201, 1500, 2000, 2500, 6000, 6001]),
    "groups_per_user": st.sampled_from([500, 999, 1000, 2000, 3000, 3001]),
    "history_days": st.sampled_from([7, 30, 60, 90, 180, 360]),
}
item_choices = st.lists(
    st.sampled_from(sorted(item_values)).flatmap(lambda k: st.tuples(st.just(k), item_values[k])),
    max_size=2,
).map(dict)

advance = st.tuples(st.just("advance"), st.integers(0, 40 * 24 * 3600))
upgrade = st.tuples(st.just("upgrade"), st.sampled_from(["pro", "flagship", "pro", "trial"]),
                    item_choices)
change = st.tuples(st.just("change"), st.sampled_from([None, None, "trial", "pro", "flagship"]),
                   item_choices)
configure = st.tuples(st.just("configure"),
                      st.sampled_from([None, None, "trial", "pro", "flagship"]), item_choices)
# disabling ends the story: at most one, placed somewhere in the sequence
steps = st.tuples(
    st.lists(st.one_of(advance, change, change, upgrade, configure), min_size=1, max_size=30),
    st.one_of(st.none(), st.none(), st.tuples(st.integers(0, 30), st.booleans())),
).map(lambda t: t[0] if t[1] is None else
      [*t[0][: t[1][0]], ("disable", t[1][1]), *t[0][t[1][0]:]])


def _op(step: tuple[Any, ...], name: str, edition: str) -> Operation:
    """`change` is what an operator would do: upgrade on Trial, else change configuration."""
    if step[0] == "change":
        if edition == "trial":
            return Upgrade(step[1] if step[1] in ("pro", "flagship") else "pro", step[2])
        return Configure(step[1], step[2])
    if step[0] == "upgrade":
        return Upgrade(step[1], step[2])
    if step[0] == "configure":
        return Configure(step[1], step[2])
    return Disable(name if step[1] else name + "?")


async def _drive(db: Database, program: list[tuple[Any, ...]], owner: str) -> int:
    async with db.write() as conn:
        await accounts.create(conn, owner)
        app = await apps.create(conn, "prop", CATALOG, owner=owner, actor="prop")
    for step in program:
        if step[0] == "advance":
            async with db.write() as conn:
                await clock.set_time(conn, await clock.now(conn) + timedelta(seconds=step[1]))
            continue
        try:
            async with db.write() as conn:
                edition = (await apps.get(conn, app.sdkappid)).plan.edition
                await apps.apply(conn, app.sdkappid, _op(step, "prop", edition), CATALOG, UTC,
                                 actor="prop")
        except Refused:
            pass
    return app.sdkappid


async def _stored(db: Database, sdkappid: int) -> tuple[Any, list[Any]]:
    async with db.read() as conn:
        row = (await conn.execute(
            sa.select(apps_table).where(apps_table.c.sdkappid == sdkappid))).one()
        events = list(await conn.execute(
            sa.select(plan_events).where(plan_events.c.sdkappid == sdkappid)
            .order_by(plan_events.c.seq)))
    return row, events


def check_R4(events: list[Any]) -> None:
    """At most one version change per month; an item changes at most once per month
    unless the version changed earlier in that month (or in the same operation)."""
    by_month: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for e in events[1:]:
        by_month[(e.at.year, e.at.month)].append(e)
    for month, evs in by_month.items():
        version_changes = [e for e in evs if e.before["edition"] != e.after["edition"]]
        assert len(version_changes) <= 1, month
        seen: set[str] = set()
        version_at = version_changes[0].at if version_changes else None
        for e in evs:
            if e.before["edition"] == e.after["edition"]:
                # outside a version change every item difference is an explicit change
                changed = {k for k in ITEM_KEYS if e.before["items"][k] != e.after["items"][k]}
                assert set(e.items_changed) == changed
            after_version = version_at is not None and version_at <= e.at
            if not after_version:
                again = seen & set(e.items_changed)
                assert not again, (month, again)
            seen |= set(e.items_changed)


def check_disabled_final(events: list[Any]) -> None:
    statuses = [e.after["status"] for e in events]
    if "disabled" in statuses:
        assert statuses.index("disabled") == len(statuses) - 1
        assert events[-1].operation == "disable"


def check_replay(row: Any, events: list[Any]) -> None:
    """The history is one unbroken chain, and its end is the stored current plan."""
    assert events[0].operation == "create" and events[0].before is None
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for prev, nxt in pairwise(events):
        assert nxt.before == prev.after
        assert nxt.at >= prev.at
    replayed: dict[str, Any] = {}
    for e in events:
        replayed = {"status": e.after["status"], "service_version": e.after["edition"],
                    **e.after["items"]}
    stored = {"status": row.status, "service_version": row.service_version,
              **{k: getattr(row, k) for k in ITEM_KEYS}}
    assert replayed == stored
    assert row.revision == len(events)
    for k in ITEM_KEYS:  # every stored value is one the edition allows
        assert CATALOG.offer(k, row.service_version).allowed(stored[k]) or (
            stored[k] == CATALOG.offer(k, row.service_version).free)


def test_lifecycle_properties_hold_for_random_operation_sequences(imcloud: Cli) -> None:
    imcloud("init", "--simulated-clock", "2019-01-01")
    counter = iter(range(10**9))
    seen: Counter[str] = Counter()

    @given(program=steps)
    def prop(program: list[tuple[Any, ...]]) -> None:
        async def main() -> None:
            db = Database(imcloud.db_url)
            try:
                sdkappid = await _drive(db, program, f"owner{next(counter)}")
                row, events = await _stored(db, sdkappid)
                seen["ops"] += len(events) - 1
                seen[row.status] += 1
                check_R4(events)
                check_disabled_final(events)
                check_replay(row, events)
                if row.status == "disabled":  # and it stays so, whatever is tried
                    for op in (Upgrade("pro"), Configure("flagship"), Configure("trial"),
                               Disable("prop")):
                        try:
                            async with db.write() as conn:
                                await apps.apply(conn, sdkappid, op, CATALOG, UTC, actor="x")
                            raise AssertionError("a disabled app changed")
                        except Refused as e:
                            assert e.code == 60016
                    assert await _stored(db, sdkappid) == (row, events)
            finally:
                await db.dispose()

        run(main())

    prop()
    # the generator reaches the interesting states, not only refusals
    assert seen["ops"] > seen["active"] + seen["disabled"] and seen["disabled"] > 0, seen


def test_R4_concurrent_changes_of_one_item_admit_one(imcloud: Cli) -> None:
    """Two operators change the same item at the same moment: exactly one wins (R4)."""
    imcloud("init", "--simulated-clock", "2019-01-01")
    app = imcloud("app", "create", "race")["sdkappid"]
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("clock", "set", "2019-02-05")

    async def main() -> list[Any]:
        dbs = [Database(imcloud.db_url) for _ in range(8)]

        async def attempt(db: Database, value: int) -> Any:
            try:
                async with db.write() as conn:
                    await apps.apply(conn, app, Configure(None, {"group_member_limit": value}),
                                     CATALOG, UTC, actor="race")
                return value
            except Refused as e:
                return e.rule

        try:
            return await asyncio.gather(*(attempt(db, 300 + i) for i, db in enumerate(dbs)))
        finally:
            for db in dbs:
                await db.dispose()

    results = run(main())
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(r == "R4" for r in results if not isinstance(r, int)), results
    shown = imcloud("app", "show", str(app))
    assert shown["items"]["group_member_limit"] == winners[0]
    assert len(imcloud("app", "history", str(app))) == 3
