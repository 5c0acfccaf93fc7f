"""Billing end to end through the real CLI on a simulated clock (SQLite and PostgreSQL).

Amounts are computed by hand from the SPEC's price list and written as literals.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from imcloud.store.db import Database
from tests.conftest import Cli, run


def upgraded_feb_10(imcloud: Cli, name: str = "scenario") -> str:
    imcloud("init", "--simulated-clock", "2019-02-01")
    app = str(imcloud("app", "create", name)["sdkappid"])
    imcloud("clock", "set", "2019-02-10")
    imcloud("app", "upgrade", app, "--edition", "pro")
    return app


def lines(bill: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(x["item"], x["level"], x["amount"]) for x in bill["lines"]]


def test_B6_reference_scenario_1_bills(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    imcloud("clock", "set", "2019-02-15")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "on")
    imcloud("clock", "set", "2019-02-25")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "off")
    imcloud("clock", "set", "2019-05-03")
    imcloud("bill", "run")
    feb = imcloud("bill", "show", app, "--month", "2019-02")
    assert feb["total"] == "0.00" and feb["lines"] == []
    assert feb["number"] == f"{app}-201902"
    for month in ("2019-03", "2019-04"):
        bill = imcloud("bill", "show", app, "--month", month)
        assert lines(bill) == [("edition", "Pro", "149.99")]
        assert bill["total"] == "149.99"


def test_B6_reference_scenario_2_bills(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    imcloud("clock", "set", "2019-02-15")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "on")
    imcloud("clock", "set", "2019-03-03")
    imcloud("bill", "run")
    assert imcloud("bill", "show", app, "--month", "2019-02")["total"] == "0.00"
    # the bill for March is issued in April
    assert imcloud.refused("bill", "show", app, "--month", "2019-03")["rule"] == "B6"
    imcloud("clock", "set", "2019-04-03")
    imcloud("bill", "run")
    march = imcloud("bill", "show", app, "--month", "2019-03")
    assert lines(march) == [("edition", "Pro", "149.99"), ("unlimited_av_rooms", "on", "149.99")]
    assert march["total"] == "299.98"
    assert march["issued_at"].startswith("2019-04-03")
    assert march["lines"][1]["period_start"].startswith("2019-03-01")
    assert march["lines"][1]["unit_price"] == "149.99"
    assert march["lines"][1]["quantity"] == "1"


def test_B6_reference_scenario_3_bills(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    imcloud("clock", "set", "2019-04-01")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "on")
    imcloud("clock", "set", "2019-05-03")
    imcloud("bill", "run")
    assert imcloud("bill", "list", app) == [
        {"month": "2019-02", "number": f"{app}-201902", "total": "0.00"},
        {"month": "2019-03", "number": f"{app}-201903", "total": "149.99"},
        {"month": "2019-04", "number": f"{app}-201904", "total": "299.98"},
    ]


def test_B6_bill_run_refused_before_bill_day(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    imcloud("clock", "set", "2019-03-02T23:59:59")
    error = imcloud.refused("bill", "run", "--month", "2019-02")
    assert error["rule"] == "B6" and "2019-03-03" in error["message"]
    assert imcloud("bill", "run") == []
    assert imcloud("bill", "list", app) == []
    imcloud("clock", "set", "2019-03-03")
    assert imcloud("bill", "run") == [{"month": "2019-02", "bills": 1, "new": 1}]


def test_B6_trial_apps_get_no_bill_and_disabled_apps_get_their_last(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    trial = str(imcloud("app", "create", "stays-on-trial")["sdkappid"])
    imcloud("clock", "set", "2019-03-20")
    imcloud("app", "configure", app, "--content-filtering", "on")
    imcloud("clock", "set", "2019-04-10")
    imcloud("app", "disable", app, "--confirm", "scenario")
    imcloud("clock", "set", "2019-06-03")
    imcloud("bill", "run")
    assert imcloud("bill", "list", trial) == []
    assert imcloud("bill", "list", app) == [
        {"month": "2019-02", "number": f"{app}-201902", "total": "0.00"},
        {"month": "2019-03", "number": f"{app}-201903", "total": "299.98"},
        {"month": "2019-04", "number": f"{app}-201904", "total": "299.98"},
    ]
    april = imcloud("bill", "show", app, "--month", "2019-04")
    assert april["lines"][0]["period_end"].startswith("2019-04-10")


def test_B6_downgrade_mid_month_charges_that_month(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    imcloud("clock", "set", "2019-03-05")
    imcloud("app", "configure", app, "--history-days", "90")
    imcloud("clock", "set", "2019-04-12")
    imcloud("app", "downgrade", app)
    imcloud("clock", "set", "2019-06-03")
    imcloud("bill", "run")
    assert [b["total"] for b in imcloud("bill", "list", app)] == ["0.00", "299.98", "299.98"]


def test_B5_usage_overage_on_the_bill(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    imcloud("usage", "record", app, "--date", "2019-02-20", "--dau", "50000")  # grace month
    imcloud("usage", "record", app, "--date", "2019-03-07", "--dau", "20001")
    imcloud("usage", "record", app, "--date", "2019-03-08", "--dau", "12000",
            "--groups", "100001")
    shown = imcloud("usage", "record", app, "--date", "2019-03-07", "--dau", "15000")
    assert shown["dau"] == 20001  # a day keeps its peak
    imcloud("clock", "set", "2019-04-03")
    imcloud("bill", "run")
    assert imcloud("bill", "show", app, "--month", "2019-02")["total"] == "0.00"
    march = imcloud("bill", "show", app, "--month", "2019-03")
    assert lines(march) == [
        ("edition", "Pro", "149.99"),
        ("dau_overage", "20001", "299.98"),
        ("group_overage", "100001", "149.99"),
    ]
    assert march["lines"][1]["quantity"] == "2"
    assert march["total"] == "599.96"
    usage = imcloud("usage", "show", app, "--month", "2019-03")
    assert len(usage["days"]) == 31
    assert usage["days"][6] == {"date": "2019-03-07", "dau": 20001, "groups": 0, "av_rooms": 0}


def test_B6_bill_csv_export(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    imcloud("clock", "set", "2019-04-03")
    imcloud("bill", "run")
    result = imcloud.runner.invoke(
        __import__("imcloud.cli", fromlist=["cli"]).cli,
        ["bill", "show", app, "--month", "2019-03", "--csv", "--db", imcloud.db_url])
    assert result.exit_code == 0
    rows = result.stdout.strip().splitlines()
    assert rows[0] == ("number,item,level,description,period_start,period_end,quantity,"
                       "unit_price,amount")
    assert rows[1].startswith(f"{app}-201903,edition,Pro,Pro Edition base fee,2019-03-01")
    assert rows[1].endswith(",1,149.99,149.99")
    assert rows[-1] == f"{app}-201903,total,,,,,,,149.99"


def test_B6_run_twice_same_bills_and_issued_bills_never_change(imcloud: Cli) -> None:
    app = upgraded_feb_10(imcloud)
    imcloud("clock", "set", "2019-04-03")
    imcloud("bill", "run")
    march = imcloud("bill", "show", app, "--month", "2019-03")
    imcloud("clock", "set", "2019-04-05")
    assert imcloud("bill", "run", "--month", "2019-03") == [
        {"month": "2019-03", "bills": 1, "new": 0}]
    # later changes and late usage reports do not touch an issued bill
    imcloud("app", "configure", app, "--unlimited-av-rooms", "on")
    imcloud("usage", "record", app, "--date", "2019-03-10", "--dau", "90000")
    assert imcloud("bill", "show", app, "--month", "2019-03") == march

    async def tamper() -> list[str]:
        db = Database(imcloud.db_url)
        errors = []
        for stmt in ("UPDATE bills SET total = '0.00'", "DELETE FROM bills"):
            try:
                async with db.write() as conn:
                    await conn.execute(sa.text(stmt))
            except Exception as e:  # the database refuses
                errors.append(str(e))
        await db.dispose()
        return errors

    errors = run(tamper())
    assert len(errors) == 2 and all("never change" in e for e in errors)
    assert imcloud("bill", "show", app, "--month", "2019-03") == march


def test_B7_preview_through_the_cli(imcloud: Cli) -> None:
    imcloud("init", "--simulated-clock", "2019-02-01")
    app = str(imcloud("app", "create", "p")["sdkappid"])
    imcloud("clock", "set", "2019-02-10")
    p = imcloud("app", "preview", app, "--edition", "pro", "--unlimited-av-rooms", "on")
    assert (p["this_month"], p["monthly_from_next_month"]) == ("0.00", "299.98")
    imcloud("app", "upgrade", app, "--edition", "pro", "--unlimited-av-rooms")
    imcloud("clock", "set", "2019-03-10")
    p = imcloud("app", "preview", app, "--history-days", "90", "--content-filtering", "on")
    # Pro 149.99 + AV 149.99 + history 90 149.99 + filtering 149.99
    assert (p["this_month"], p["monthly_from_next_month"]) == ("299.98", "599.96")
    p = imcloud("app", "preview", app, "--edition", "flagship")
    # Pro stays charged for March (Flagship free by B2); AV rooms end on Flagship
    assert (p["this_month"], p["monthly_from_next_month"]) == ("0.00", "449.99")
    p = imcloud("app", "preview", app, "--downgrade")
    assert (p["this_month"], p["monthly_from_next_month"]) == ("0.00", "0.00")
    p = imcloud("app", "preview", app, "--disable")
    assert (p["this_month"], p["monthly_from_next_month"]) == ("0.00", "0.00")
    # a preview is decided by the same rules: a refused change is refused
    imcloud("app", "configure", app, "--content-filtering", "on")
    assert imcloud.refused("app", "preview", app, "--content-filtering", "off")["rule"] == "R4"
    before = imcloud("app", "history", app)
    imcloud("app", "preview", app, "--groups-per-user", "1000")
    assert imcloud("app", "history", app) == before  # a preview changes nothing
