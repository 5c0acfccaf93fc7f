"""B1–B7 decided by the pure billing engine (no database).

Every expected amount is computed by hand and written as a literal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imcloud.billing import (
    BillLine,
    DailyUsage,
    Policy,
    bill_lines,
    billable,
    monthly_fee,
    preview,
    total,
)
from imcloud.catalog import ITEM_KEYS, load
from imcloud.clock import month_start, next_month
from imcloud.plans import AppPlan

C = load()
MONTHLY = Policy()
DAILY = Policy(proration="daily")
CREATED = datetime(2019, 1, 5, tzinfo=UTC)

Timeline = list[tuple[datetime, AppPlan]]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def plan(edition: str, **items: bool | int) -> AppPlan:
    values = dict(C.free_items(edition))
    values.update(items)
    return AppPlan("active", edition, values)


def trial() -> AppPlan:
    return plan("trial")


def pro(**items: bool | int) -> AppPlan:
    return plan("pro", **items)


def flagship(**items: bool | int) -> AppPlan:
    return plan("flagship", **items)


def disabled(p: AppPlan) -> AppPlan:
    return AppPlan("disabled", p.edition, p.items)


def history(*changes: tuple[str, AppPlan]) -> Timeline:
    """Created on Trial on 2019-01-05, then each (time, plan) change."""
    return [(CREATED, trial()), *((at(t), p) for t, p in changes)]


def bill(
    timeline: Timeline,
    month: str,
    usage: Sequence[DailyUsage] = (),
    policy: Policy = MONTHLY,
    tz: tzinfo = UTC,
) -> list[BillLine]:
    year, m = (int(x) for x in month.split("-"))
    return bill_lines(timeline, usage, C, year, m, tz, policy)


def summary(lines: Sequence[BillLine]) -> list[tuple[str, str, D]]:
    return [(line.item, line.level, line.amount) for line in lines]


def is_billable(timeline: Timeline, month: str, tz: tzinfo = UTC) -> bool:
    year, m = (int(x) for x in month.split("-"))
    return billable(timeline, year, m, tz, C)


UPGRADE = ("2019-02-10", pro())  # the reference scenarios' upgrade


# ------------------------------------------------------------------ SPEC §5 scenarios


def test_B2_reference_scenario_1_av_rooms_on_and_off_in_upgrade_month() -> None:
    tl = history(UPGRADE, ("2019-02-15", pro(unlimited_av_rooms=True)), ("2019-02-25", pro()))
    assert is_billable(tl, "2019-02")
    assert bill(tl, "2019-02") == []
    assert total(bill(tl, "2019-02")) == D("0.00")
    assert summary(bill(tl, "2019-03")) == [("edition", "Pro", D("149.99"))]
    assert total(bill(tl, "2019-03")) == D("149.99")
    assert summary(bill(tl, "2019-04")) == [("edition", "Pro", D("149.99"))]


def test_B2_reference_scenario_2_av_rooms_kept_charged_from_march() -> None:
    tl = history(UPGRADE, ("2019-02-15", pro(unlimited_av_rooms=True)))
    assert total(bill(tl, "2019-02")) == D("0.00")
    march = bill(tl, "2019-03")
    assert summary(march) == [
        ("edition", "Pro", D("149.99")),
        ("unlimited_av_rooms", "on", D("149.99")),
    ]
    assert total(march) == D("299.98")
    assert march[1].period_start == at("2019-03-01")
    assert march[1].period_end == at("2019-04-01")


def test_B3_reference_scenario_3_av_rooms_enabled_april_1() -> None:
    tl = history(UPGRADE, ("2019-04-01", pro(unlimited_av_rooms=True)))
    assert total(bill(tl, "2019-02")) == D("0.00")
    assert summary(bill(tl, "2019-03")) == [("edition", "Pro", D("149.99"))]
    april = bill(tl, "2019-04")
    assert summary(april) == [
        ("edition", "Pro", D("149.99")),
        ("unlimited_av_rooms", "on", D("149.99")),
    ]
    assert total(april) == D("299.98")


def test_B2_reference_scenario_3_changed_and_restored_in_feb_then_april() -> None:
    tl = history(
        UPGRADE,
        ("2019-02-15", pro(unlimited_av_rooms=True)),
        ("2019-02-20", pro()),
        ("2019-04-01", pro(unlimited_av_rooms=True)),
    )
    assert total(bill(tl, "2019-02")) == D("0.00")
    assert total(bill(tl, "2019-03")) == D("149.99")
    assert total(bill(tl, "2019-04")) == D("299.98")


# ------------------------------------------------------------------ B1 prices and levels


@pytest.mark.parametrize(
    ("edition", "item", "value", "level", "price", "march_total"),
    [
        ("pro", "unlimited_av_rooms", True, "on", "149.99", "299.98"),
        ("pro", "content_filtering", True, "on", "149.99", "299.98"),
        ("flagship", "content_filtering", True, "on", "149.99", "599.98"),
        ("pro", "group_member_limit", 2000, "2000", "79.99", "229.98"),
        ("pro", "group_member_limit", 201, "201", "79.99", "229.98"),
        ("flagship", "group_member_limit", 6000, "6000", "79.99", "529.98"),
        ("pro", "groups_per_user", 1000, "1000", "149.99", "299.98"),
        ("flagship", "groups_per_user", 3000, "3000", "149.99", "599.98"),
        ("pro", "history_days", 30, "30", "79.99", "229.98"),
        ("pro", "history_days", 90, "90", "149.99", "299.98"),
        ("pro", "history_days", 180, "180", "229.99", "379.98"),
        ("pro", "history_days", 360, "360", "379.99", "529.98"),
        ("flagship", "history_days", 90, "90", "79.99", "529.98"),
        ("flagship", "history_days", 180, "180", "149.99", "599.98"),
        ("flagship", "history_days", 360, "360", "299.99", "749.98"),
    ],
)
def test_B1_price_looked_up_by_edition_item_and_level(
    edition: str, item: str, value: bool | int, level: str, price: str, march_total: str
) -> None:
    tl = history(("2019-02-10", plan(edition, **{item: value})))
    march = bill(tl, "2019-03")
    assert [line.item for line in march] == ["edition", item]
    line = march[1]
    assert (line.level, line.quantity, line.unit_price, line.amount) == (
        level,
        D(1),
        D(price),
        D(price),
    )
    assert total(march) == D(march_total)


@pytest.mark.parametrize(
    ("edition", "base", "name"), [("pro", "149.99", "Pro"), ("flagship", "449.99", "Flagship")]
)
def test_B1_edition_base_fee(edition: str, base: str, name: str) -> None:
    march = bill(history(("2019-02-10", plan(edition))), "2019-03")
    assert summary(march) == [("edition", name, D(base))]
    assert march[0].description == f"{name} Edition base fee"


def test_B1_free_default_values_are_not_charged() -> None:
    tl = history(("2019-02-10", flagship(group_member_limit=2000, history_days=30)))
    assert summary(bill(tl, "2019-03")) == [("edition", "Flagship", D("449.99"))]
    tl = history(("2019-02-10", pro(group_member_limit=200, groups_per_user=500, history_days=7)))
    assert summary(bill(tl, "2019-03")) == [("edition", "Pro", D("149.99"))]


def test_B1_lines_in_catalog_order_with_descriptions() -> None:
    full = pro(
        unlimited_av_rooms=True,
        content_filtering=True,
        group_member_limit=2000,
        groups_per_user=1000,
        history_days=90,
    )
    usage = [DailyUsage(date(2019, 3, 5), 20_001, 100_001)]
    march = bill(history(("2019-02-10", full)), "2019-03", usage)
    assert [(line.item, line.description) for line in march] == [
        ("edition", "Pro Edition base fee"),
        ("unlimited_av_rooms", "Unlimited AV chat rooms"),
        ("content_filtering", "Content filtering"),
        ("group_member_limit", "Group member limit: 2000"),
        ("groups_per_user", "Groups per user: 1000"),
        ("history_days", "Message history (days): 90"),
        ("dau_overage", "DAU overage (peak 20,001)"),
        ("group_overage", "Group count overage (peak 100,001)"),
    ]
    # 149.99 + 149.99 + 149.99 + 79.99 + 149.99 + 149.99 + 2 x 149.99 + 149.99
    assert total(march) == D("1279.91")


def test_B1_item_level_unchanged_by_version_change_keeps_its_interval() -> None:
    # history_days=90 on Pro (149.99), then on Flagship (79.99) from 2019-05-20
    tl = history(
        ("2019-02-10", pro(history_days=90)), ("2019-05-20T12:00", flagship(history_days=90))
    )
    may = bill(tl, "2019-05")
    assert summary(may) == [
        ("edition", "Pro", D("149.99")),
        ("history_days", "90", D("149.99")),
    ]
    assert may[1].period_end == at("2019-06-01")  # kept: no grace from the 20th
    assert total(may) == D("299.98")
    june = bill(tl, "2019-06")
    assert summary(june) == [
        ("edition", "Flagship", D("449.99")),
        ("history_days", "90", D("79.99")),
    ]
    assert total(june) == D("529.98")


def test_B1_kept_interval_is_charged_every_day_when_prorated() -> None:
    tl = history(
        ("2019-02-10", pro(content_filtering=True)),
        ("2019-05-20T12:00", flagship(content_filtering=True)),
    )
    may = bill(tl, "2019-05", policy=DAILY)  # 31 days
    # Pro: May 1..20 = 20 days, 149.99 * 20 / 31 = 2999.80 / 31 = 96.7677.. -> 96.77
    # Flagship: free by B2. Content filtering kept: 31 days -> 149.99
    assert summary(may) == [
        ("edition", "Pro", D("96.77")),
        ("content_filtering", "on", D("149.99")),
    ]
    assert [line.quantity for line in may] == [D(20), D(31)]
    assert total(may) == D("246.76")


# ------------------------------------------------------------------ B2 grace, B3


def test_B2_upgrade_month_is_free() -> None:
    tl = history(
        (
            "2019-02-10",
            flagship(
                content_filtering=True,
                group_member_limit=3000,
                groups_per_user=2000,
                history_days=360,
            ),
        )
    )
    assert not is_billable(tl, "2019-01")
    assert is_billable(tl, "2019-02")
    assert total(bill(tl, "2019-02")) == D("0.00")
    march = bill(tl, "2019-03")
    assert march[0].period_start == at("2019-03-01")
    # 449.99 + 149.99 + 79.99 + 149.99 + 299.99
    assert total(march) == D("1129.95")


def test_B2_items_around_a_pro_to_flagship_change() -> None:
    tl = history(
        UPGRADE,
        ("2019-05-05", pro(content_filtering=True)),  # before the change: B3
        ("2019-05-20", flagship(content_filtering=True)),
        ("2019-05-25", flagship(content_filtering=True, group_member_limit=3000)),  # after: B2
    )
    may = bill(tl, "2019-05")
    assert summary(may) == [
        ("edition", "Pro", D("149.99")),
        ("content_filtering", "on", D("149.99")),
    ]
    assert may[1].period_start == at("2019-05-05")
    june = bill(tl, "2019-06")
    assert summary(june) == [
        ("edition", "Flagship", D("449.99")),
        ("content_filtering", "on", D("149.99")),
        ("group_member_limit", "3000", D("79.99")),
    ]
    assert total(june) == D("679.97")


def test_B2_loophole_downgrade_on_31st_upgrade_on_1st_is_charged() -> None:
    tl = history(UPGRADE, ("2019-03-31", trial()), ("2019-04-01", pro()))
    march = bill(tl, "2019-03")
    assert summary(march) == [("edition", "Pro", D("149.99"))]
    assert march[0].period_end == at("2019-03-31")
    april = bill(tl, "2019-04")
    assert summary(april) == [("edition", "Pro", D("149.99"))]
    assert april[0].period_start == at("2019-04-01")


def test_B2_upgrade_without_postpaid_moment_in_previous_month_gets_grace() -> None:
    tl = history(("2019-01-10", pro()), ("2019-01-31T12:00", trial()), ("2019-03-15", pro()))
    assert not is_billable(tl, "2019-02")
    assert is_billable(tl, "2019-03")
    assert total(bill(tl, "2019-03")) == D("0.00")
    assert summary(bill(tl, "2019-04")) == [("edition", "Pro", D("149.99"))]


def test_B2_version_change_at_midnight_on_the_1st_belongs_to_the_new_month() -> None:
    tl = history(("2019-01-10", pro()), ("2019-03-01T00:00", trial()), ("2019-04-01", pro()))
    feb = bill(tl, "2019-02")
    assert summary(feb) == [("edition", "Pro", D("149.99"))]
    assert feb[0].period_end == at("2019-03-01")
    assert not is_billable(tl, "2019-03")  # Pro ended at the very start of March
    assert bill(tl, "2019-03") == []
    # No postpaid moment in March, so the upgrade on April 1 gets its grace month
    assert is_billable(tl, "2019-04")
    assert total(bill(tl, "2019-04")) == D("0.00")
    assert total(bill(tl, "2019-05")) == D("149.99")


def test_B2_switch_between_postpaid_editions_at_midnight_on_the_1st_gets_no_grace() -> None:
    """Closing the loophole of docs/decisions.md: Pro→Flagship at 00:00 on the 1st would
    otherwise leave that month with no edition charge at all."""
    tl = history(UPGRADE, ("2019-04-01T00:00", flagship()), ("2019-05-01T00:00", pro()))
    assert summary(bill(tl, "2019-03")) == [("edition", "Pro", D("149.99"))]
    assert summary(bill(tl, "2019-04")) == [("edition", "Flagship", D("449.99"))]
    assert summary(bill(tl, "2019-05")) == [("edition", "Pro", D("149.99"))]


def test_B2_switch_between_postpaid_editions_one_second_after_midnight_is_graced() -> None:
    tl = history(UPGRADE, ("2019-04-01T00:00:01", flagship()))
    assert summary(bill(tl, "2019-04")) == [("edition", "Pro", D("149.99"))]
    assert summary(bill(tl, "2019-05")) == [("edition", "Flagship", D("449.99"))]


def test_B2_months_are_calendar_months_in_the_billing_time_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    # 2019-02-28 16:00 UTC is 2019-03-01 00:00 in Shanghai: a March upgrade there
    tl = history(("2019-02-28T16:00", pro()))
    assert not is_billable(tl, "2019-02", shanghai)
    assert total(bill(tl, "2019-03", tz=shanghai)) == D("0.00")
    april = bill(tl, "2019-04", tz=shanghai)
    assert summary(april) == [("edition", "Pro", D("149.99"))]
    assert april[0].period_start == at("2019-03-31T16:00")
    # ...while in UTC the same upgrade is in February
    assert total(bill(tl, "2019-03")) == D("149.99")


def test_B3_item_added_in_ordinary_month_charged_that_month_whole() -> None:
    tl = history(UPGRADE, ("2019-04-20", pro(group_member_limit=2000)))
    april = bill(tl, "2019-04")
    assert summary(april) == [
        ("edition", "Pro", D("149.99")),
        ("group_member_limit", "2000", D("79.99")),
    ]
    assert april[1].period_start == at("2019-04-20")
    assert total(april) == D("229.98")


# ------------------------------------------------------------------ B4


def test_B4_pro_to_flagship_later_month_pro_price_that_month() -> None:
    tl = history(UPGRADE, ("2019-05-20", flagship()))
    may = bill(tl, "2019-05")
    assert summary(may) == [("edition", "Pro", D("149.99"))]
    assert (may[0].period_start, may[0].period_end) == (at("2019-05-01"), at("2019-05-20"))
    assert summary(bill(tl, "2019-06")) == [("edition", "Flagship", D("449.99"))]


def test_B4_highest_level_of_the_month_is_charged_once() -> None:
    tl = history(
        ("2019-02-10", pro(history_days=30)),
        ("2019-04-10", pro(history_days=180)),
        ("2019-05-10", pro(history_days=30)),
    )
    assert summary(bill(tl, "2019-03"))[1] == ("history_days", "30", D("79.99"))
    april = bill(tl, "2019-04")
    assert summary(april)[1:] == [("history_days", "180", D("229.99"))]
    assert (april[1].period_start, april[1].period_end) == (at("2019-04-01"), at("2019-05-01"))
    assert summary(bill(tl, "2019-05"))[1:] == [("history_days", "180", D("229.99"))]
    assert summary(bill(tl, "2019-06"))[1:] == [("history_days", "30", D("79.99"))]


def test_B4_equal_prices_show_the_later_level() -> None:
    tl = history(
        ("2019-02-10", pro(group_member_limit=300)), ("2019-04-10", pro(group_member_limit=2000))
    )
    april = bill(tl, "2019-04")
    assert summary(april)[1:] == [("group_member_limit", "2000", D("79.99"))]
    assert april[1].description == "Group member limit: 2000"


def test_B4_downgrade_to_trial_mid_month_charges_that_month_in_full() -> None:
    tl = history(UPGRADE, ("2019-04-01", pro(unlimited_av_rooms=True)), ("2019-05-12", trial()))
    may = bill(tl, "2019-05")
    assert summary(may) == [
        ("edition", "Pro", D("149.99")),
        ("unlimited_av_rooms", "on", D("149.99")),
    ]
    assert may[0].period_end == at("2019-05-12")
    assert total(may) == D("299.98")
    assert not is_billable(tl, "2019-06")
    assert bill(tl, "2019-06") == []


def test_B4_disable_mid_month_charged_that_month_nothing_after() -> None:
    tl = history(UPGRADE, ("2019-05-12T08:00", disabled(pro())))
    usage = [DailyUsage(date(2019, 5, 20), 50_000, 0)]  # after disabling: never counted
    may = bill(tl, "2019-05", usage)
    assert summary(may) == [("edition", "Pro", D("149.99"))]
    assert may[0].period_end == at("2019-05-12T08:00")
    assert is_billable(tl, "2019-05")
    assert not is_billable(tl, "2019-06")
    assert bill(tl, "2019-06") == []


def test_B4_daily_proration_rounds_once_per_line() -> None:
    tl = history(UPGRADE, ("2019-03-11", pro(unlimited_av_rooms=True)))
    march = bill(tl, "2019-03", policy=DAILY)  # 31 days
    # AV rooms March 11..31 = 21 days: 149.99 * 21 / 31 = 3149.79 / 31 = 101.6061.. -> 101.61
    # (rounding each day first would give 4.84 * 21 = 101.64)
    assert summary(march) == [
        ("edition", "Pro", D("149.99")),
        ("unlimited_av_rooms", "on", D("101.61")),
    ]
    av = march[1]
    assert (av.quantity, av.unit_price) == (D(21), D("149.99"))
    assert (av.period_start, av.period_end) == (at("2019-03-11"), at("2019-04-01"))
    assert total(march) == D("251.60")


def test_B4_daily_proration_rounds_half_up() -> None:
    tl = history(UPGRADE, ("2019-06-16", pro(unlimited_av_rooms=True)))
    june = bill(tl, "2019-06", policy=DAILY)  # 30 days
    # June 16..30 = 15 days: 149.99 * 15 / 30 = 74.995 -> 75.00
    assert summary(june)[1] == ("unlimited_av_rooms", "on", D("75.00"))
    assert total(june) == D("224.99")


def test_B4_daily_proration_one_line_per_level() -> None:
    tl = history(("2019-02-10", pro(history_days=30)), ("2019-04-10T12:00", pro(history_days=90)))
    april = bill(tl, "2019-04", policy=DAILY)  # 30 days
    # 30 on April 1..9 (9 days): 79.99 * 9 / 30 = 23.997 -> 24.00
    # 90 on April 10..30 (21 days, the 10th at its highest level): 149.99 * 21 / 30
    #   = 3149.79 / 30 = 104.993 -> 104.99
    assert summary(april)[1:] == [
        ("history_days", "30", D("24.00")),
        ("history_days", "90", D("104.99")),
    ]
    assert [line.quantity for line in april[1:]] == [D(9), D(21)]
    assert total(april) == D("278.98")


def test_B4_daily_proration_grace_month_is_still_free() -> None:
    tl = history(UPGRADE)
    assert bill(tl, "2019-02", policy=DAILY) == []
    assert total(bill(tl, "2019-03", policy=DAILY)) == D("149.99")


# ------------------------------------------------------------------ B5 overage


@pytest.mark.parametrize(
    ("dau", "groups", "expected"),
    [
        (10_000, 100_000, []),
        (10_001, 0, [("dau_overage", "10001", D("149.99"))]),
        (20_000, 0, [("dau_overage", "20000", D("149.99"))]),
        (20_001, 0, [("dau_overage", "20001", D("299.98"))]),
        (0, 100_001, [("group_overage", "100001", D("149.99"))]),
        (0, 200_000, [("group_overage", "200000", D("149.99"))]),
        (0, 200_001, [("group_overage", "200001", D("299.98"))]),
    ],
)
def test_B5_overage_per_started_unit_of_peak(
    dau: int, groups: int, expected: list[tuple[str, str, D]]
) -> None:
    usage = [
        DailyUsage(date(2019, 3, 1), 5_000, 50_000),
        DailyUsage(date(2019, 3, 14), dau, groups),
        DailyUsage(date(2019, 3, 20), 9_000, 90_000),
    ]
    march = bill(history(UPGRADE), "2019-03", usage)
    assert summary(march) == [("edition", "Pro", D("149.99")), *expected]


def test_B5_overage_line_fields() -> None:
    usage = [DailyUsage(date(2019, 3, 14), 20_001, 0)]
    line = bill(history(UPGRADE), "2019-03", usage, policy=DAILY)[1]  # never prorated
    assert line.description == "DAU overage (peak 20,001)"
    assert (line.quantity, line.unit_price, line.amount) == (D(2), D("149.99"), D("299.98"))
    assert (line.period_start, line.period_end) == (at("2019-03-01"), at("2019-04-01"))


def test_B5_no_overage_in_a_grace_month() -> None:
    usage = [DailyUsage(date(2019, 2, 20), 50_000, 300_000)]
    assert bill(history(UPGRADE), "2019-02", usage) == []


def test_B5_peak_only_over_days_a_postpaid_edition_was_in_force() -> None:
    tl = history(UPGRADE, ("2019-03-10T12:00", trial()))
    usage = [
        DailyUsage(date(2019, 3, 5), 12_000, 0),
        DailyUsage(date(2019, 3, 10), 15_000, 0),  # Pro until noon: counts
        DailyUsage(date(2019, 3, 20), 25_000, 0),  # Trial: not a chargeable day
    ]
    march = bill(tl, "2019-03", usage)
    assert summary(march) == [
        ("edition", "Pro", D("149.99")),
        ("dau_overage", "15000", D("149.99")),
    ]
    assert march[1].period_end == at("2019-03-11")
    assert total(march) == D("299.98")


def test_B5_peak_only_from_the_fee_start() -> None:
    # B2 loophole: no grace, so the fee starts at the upgrade on April 15
    tl = history(UPGRADE, ("2019-03-31T12:00", trial()), ("2019-04-15T09:00", pro()))
    usage = [
        DailyUsage(date(2019, 4, 14), 40_000, 0),  # before the fee start
        DailyUsage(date(2019, 4, 15), 12_000, 0),
    ]
    april = bill(tl, "2019-04", usage)
    assert summary(april) == [
        ("edition", "Pro", D("149.99")),
        ("dau_overage", "12000", D("149.99")),
    ]
    assert april[0].period_start == at("2019-04-15T09:00")
    assert total(april) == D("299.98")


def test_B5_days_on_a_graced_edition_after_a_version_change_still_count() -> None:
    tl = history(UPGRADE, ("2019-05-20", flagship()))
    usage = [DailyUsage(date(2019, 5, 25), 30_000, 0)]
    may = bill(tl, "2019-05", usage)
    # Pro 149.99 + 2 units x 149.99
    assert summary(may) == [("edition", "Pro", D("149.99")), ("dau_overage", "30000", D("299.98"))]
    assert total(may) == D("449.97")


# ------------------------------------------------------------------ B6 billable


def test_B6_billable_when_postpaid_at_any_moment_even_at_zero() -> None:
    tl = history(UPGRADE)
    assert not is_billable(tl, "2019-01")
    assert is_billable(tl, "2019-02") and total(bill(tl, "2019-02")) == D("0.00")
    assert not is_billable(history(), "2019-02")


# ------------------------------------------------------------------ monthly fee, B7 preview


def test_monthly_fee_of_a_configuration() -> None:
    assert monthly_fee(trial(), C) == D("0.00")
    assert monthly_fee(pro(), C) == D("149.99")
    assert monthly_fee(pro(unlimited_av_rooms=True), C) == D("299.98")
    assert monthly_fee(flagship(history_days=90, group_member_limit=2000), C) == D("529.98")
    assert monthly_fee(disabled(pro(unlimited_av_rooms=True)), C) == D("0.00")


def test_B7_preview_upgrade_in_grace_month() -> None:
    p = preview(history(), pro(unlimited_av_rooms=True), at("2019-02-10"), C, UTC, MONTHLY)
    assert p.this_month == D("0.00")
    assert p.monthly_from_next_month == D("299.98")
    assert p.lines == []


def test_B7_preview_adding_an_item_in_an_ordinary_month() -> None:
    p = preview(history(UPGRADE), pro(unlimited_av_rooms=True), at("2019-04-20"), C, UTC, MONTHLY)
    assert p.this_month == D("149.99")
    assert p.monthly_from_next_month == D("299.98")
    assert summary(p.lines) == [
        ("edition", "Pro", D("149.99")),
        ("unlimited_av_rooms", "on", D("149.99")),
    ]


def test_B7_preview_version_change_in_an_ordinary_month() -> None:
    p = preview(history(UPGRADE), flagship(), at("2019-04-20"), C, UTC, MONTHLY)
    assert p.this_month == D("0.00")
    assert p.monthly_from_next_month == D("449.99")


def test_B7_preview_disable() -> None:
    tl = history(UPGRADE, ("2019-03-05", pro(content_filtering=True)))
    p = preview(tl, disabled(pro(content_filtering=True)), at("2019-04-20"), C, UTC, MONTHLY)
    assert p.this_month == D("0.00")
    assert p.monthly_from_next_month == D("0.00")
    assert total(p.lines) == D("299.98")


def test_B7_preview_excludes_overage_and_follows_daily_proration() -> None:
    p = preview(history(UPGRADE), pro(unlimited_av_rooms=True), at("2019-03-11"), C, UTC, DAILY)
    assert p.this_month == D("101.61")  # 149.99 * 21 / 31, as on the bill
    # a daily-prorated downgrade on June 16: 149.99 * 15 / 30 = 74.995 -> 75.00, minus 149.99
    p = preview(history(UPGRADE), trial(), at("2019-06-16"), C, UTC, DAILY)
    assert p.this_month == D("-74.99")
    assert p.monthly_from_next_month == D("0.00")


# ------------------------------------------------------------------ properties


@st.composite
def plans(draw: st.DrawFn) -> AppPlan:
    edition = draw(st.sampled_from(["trial", "pro", "flagship"]))
    items: dict[str, bool | int] = {}
    for key in ITEM_KEYS:
        offer = C.offer(key, edition)
        if not offer.offered:
            items[key] = offer.free
        elif isinstance(offer.free, bool):
            items[key] = draw(st.booleans())
        elif offer.steps:
            items[key] = draw(st.sampled_from([offer.free, *(s for s, _ in offer.steps)]))
        else:
            assert offer.max is not None
            items[key] = draw(st.integers(offer.free, offer.max))
    status = draw(st.sampled_from(["active", "active", "active", "disabled"]))
    return AppPlan("active" if status == "active" else "disabled", edition, items)


@st.composite
def timelines(draw: st.DrawFn) -> Timeline:
    t = CREATED
    out: Timeline = [(t, trial())]
    for gap in draw(st.lists(st.integers(0, 60 * 24 * 45), max_size=8)):
        t += timedelta(minutes=gap)
        out.append((t, draw(plans())))
    return out


usages = st.lists(
    st.builds(
        DailyUsage,
        st.dates(date(2019, 1, 1), date(2019, 12, 31)),
        st.integers(0, 60_000),
        st.integers(0, 400_000),
    ),
    max_size=10,
)
zones = st.sampled_from([UTC, ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")])


def two_places(x: D) -> bool:
    return x.as_tuple().exponent == -2


@given(
    timeline=timelines(),
    usage=usages,
    month=st.integers(1, 12),
    tz=zones,
    policy=st.sampled_from([MONTHLY, DAILY]),
)
def test_B6_bill_total_is_exact_and_never_negative(
    timeline: Timeline, usage: list[DailyUsage], month: int, tz: tzinfo, policy: Policy
) -> None:
    lines = bill_lines(timeline, usage, C, 2019, month, tz, policy)
    amount = total(lines)
    assert amount >= 0
    assert amount == sum((line.amount for line in lines), D("0.00"))
    assert two_places(amount)
    start, end = month_start(2019, month, tz), month_start(*next_month(2019, month), tz)
    for line in lines:
        assert two_places(line.amount) and two_places(line.unit_price)
        assert line.amount >= 0
        assert start <= line.period_start < line.period_end <= end
    if not billable(timeline, 2019, month, tz, C):
        assert lines == []
    if policy == MONTHLY:
        items = [line.item for line in lines]
        assert len(items) == len(set(items))
