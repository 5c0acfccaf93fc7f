"""Usage metering (SPEC §6) and the content-filter word list CLI (E4)."""

from __future__ import annotations

from datetime import date

from imcloud.catalog import load
from imcloud.services import groups, tenant, usage
from imcloud.settings import Settings
from imcloud.store.db import Database
from tests.conftest import Cli, run

CATALOG = load()
TZ = Settings().billing_tz


def test_usage_daily_peak_group_count_is_recorded_even_on_quiet_days(imcloud: Cli) -> None:
    imcloud("init", "--simulated-clock", "2019-03-01T10:00:00")
    app = imcloud("app", "create", "metered")["sdkappid"]

    async def make(n: int, kind: str = "Public") -> list[str]:
        db = Database(imcloud.db_url)
        try:
            async with db.write() as conn:
                t = await tenant.load(conn, app, CATALOG, TZ)
                return [await groups.create(conn, t, groups.NewGroup(type=kind, name=f"g{i}"))
                        for i in range(n)]
        finally:
            await db.dispose()

    async def destroy(gid: str) -> None:
        db = Database(imcloud.db_url)
        try:
            async with db.write() as conn:
                await groups.destroy(conn, await tenant.load(conn, app, CATALOG, TZ), gid)
        finally:
            await db.dispose()

    async def snapshot(day: date) -> None:
        db = Database(imcloud.db_url)
        try:
            await usage.snapshot_counts(db, day)
        finally:
            await db.dispose()

    ids = run(make(3))
    run(make(2, "AVChatRoom"))
    run(destroy(ids[0]))  # the peak of the day stays 3
    imcloud("clock", "set", "2019-03-04")  # two quiet days pass
    run(snapshot(date(2019, 3, 4)))
    days = {d["date"]: d for d in imcloud("usage", "show", str(app), "--month", "2019-03")["days"]}
    assert days["2019-03-01"] == {"date": "2019-03-01", "dau": 0, "groups": 3, "av_rooms": 2}
    assert days["2019-03-04"] == {"date": "2019-03-04", "dau": 0, "groups": 2, "av_rooms": 2}
    assert days["2019-03-02"]["groups"] == 0  # nobody looked that day: not invented


def test_E4_filter_words_cli(imcloud: Cli) -> None:
    imcloud("init", "--simulated-clock", "2019-03-01")
    app = str(imcloud("app", "create", "filtered")["sdkappid"])
    assert imcloud("filter", "list", app) == {"sdkappid": int(app), "words": []}
    assert imcloud("filter", "add", app, "Durian", "  spoiler ")["words"] == ["durian", "spoiler"]
    assert imcloud("filter", "add", app, "durian")["words"] == ["durian", "spoiler"]
    assert imcloud("filter", "remove", app, "SPOILER")["words"] == ["durian"]
    error = imcloud.refused("filter", "add", app, "x" * 65)
    assert error["rule"] == "E4"
    assert imcloud("filter", "list", app)["words"] == ["durian"]
    assert imcloud.refused("filter", "list", "1400000000")["code"] is None

