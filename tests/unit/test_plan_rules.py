"""R1–R8 decided by the pure domain (no database): fast, exhaustive cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imcloud.catalog import load
from imcloud.errors import Refused
from imcloud.plans import (
    AppPlan,
    ChangeRecord,
    Configure,
    Disable,
    Upgrade,
    changeable,
    decide,
    effective_limits,
    initial_plan,
)

C = load()
TZ = UTC
NAME = "demo"


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def pro(**items: bool | int) -> AppPlan:
    base = dict(C.free_items("pro"))
    base.update(items)
    return AppPlan("active", "pro", base)


def flagship(**items: bool | int) -> AppPlan:
    base = dict(C.free_items("flagship"))
    base.update(items)
    return AppPlan("active", "flagship", base)


def refused(fn, rule: str) -> Refused:  # type: ignore[no-untyped-def]
    with pytest.raises(Refused) as e:
        fn()
    assert e.value.rule == rule, e.value.message
    return e.value


def test_R1_upgrade_from_trial_takes_effect_with_items() -> None:
    d = decide(Upgrade("pro", {"unlimited_av_rooms": True}), NAME, initial_plan(C), [],
               at("2019-02-10"), TZ, C)
    assert d.operation == "upgrade" and d.version_changed
    assert d.after.edition == "pro" and d.after.items["unlimited_av_rooms"] is True
    assert d.after.items["group_member_limit"] == 200  # Pro's free default
    assert effective_limits(d.after, C)["av_rooms"] is None


def test_R1_upgrade_refused_on_postpaid() -> None:
    refused(lambda: decide(Upgrade("flagship"), NAME, pro(), [], at("2019-03-01"), TZ, C), "R1")


def test_R1_upgrade_to_trial_refused() -> None:
    refused(lambda: decide(Upgrade("trial"), NAME, initial_plan(C), [], at("2019-03-01"), TZ, C),
            "R1")


def test_R2_configure_refused_on_trial() -> None:
    refused(lambda: decide(Configure("pro"), NAME, initial_plan(C), [], at("2019-03-01"), TZ, C),
            "R2")


def test_R2_configure_changes_version_and_items() -> None:
    d = decide(Configure("flagship", {"history_days": 90}), NAME, pro(), [],
               at("2019-03-05"), TZ, C)
    assert d.after.edition == "flagship" and d.after.items["history_days"] == 90
    assert d.items_changed == {"history_days"}


def test_R3_downgrade_ends_every_item() -> None:
    before = pro(unlimited_av_rooms=True, content_filtering=True, group_member_limit=900,
                 groups_per_user=800, history_days=180)
    d = decide(Configure("trial"), NAME, before, [], at("2019-03-05"), TZ, C)
    assert d.operation == "downgrade"
    assert d.after == AppPlan("active", "trial", C.free_items("trial"))
    assert d.items_changed == frozenset()


def test_R3_downgrade_with_an_item_refused() -> None:
    refused(lambda: decide(Configure("trial", {"content_filtering": True}), NAME, pro(), [],
                           at("2019-03-05"), TZ, C), "R8")


def test_R4_second_version_change_in_month_refused() -> None:
    records = [ChangeRecord(at("2019-03-02"), True)]
    e = refused(lambda: decide(Configure("flagship"), NAME, pro(), records,
                               at("2019-03-20"), TZ, C), "R4")
    assert "2019-04-01" in e.message


def test_R4_version_change_next_month_allowed() -> None:
    records = [ChangeRecord(at("2019-03-02"), True)]
    d = decide(Configure("flagship"), NAME, pro(), records, at("2019-04-01"), TZ, C)
    assert d.version_changed


def test_R4_item_twice_in_ordinary_month_refused() -> None:
    records = [ChangeRecord(at("2019-03-02"), False, frozenset({"unlimited_av_rooms"}))]
    refused(lambda: decide(Configure(None, {"unlimited_av_rooms": False}), NAME,
                           pro(unlimited_av_rooms=True), records, at("2019-03-20"), TZ, C), "R4")


def test_R4_other_item_in_same_month_allowed() -> None:
    records = [ChangeRecord(at("2019-03-02"), False, frozenset({"unlimited_av_rooms"}))]
    d = decide(Configure(None, {"content_filtering": True}), NAME,
               pro(unlimited_av_rooms=True), records, at("2019-03-20"), TZ, C)
    assert d.items_changed == {"content_filtering"}


def test_R4_items_free_after_version_change_in_month() -> None:
    records = [ChangeRecord(at("2019-02-10"), True),
               ChangeRecord(at("2019-02-15"), False, frozenset({"unlimited_av_rooms"}))]
    d = decide(Configure(None, {"unlimited_av_rooms": False}), NAME,
               pro(unlimited_av_rooms=True), records, at("2019-02-25"), TZ, C)
    assert d.after.items["unlimited_av_rooms"] is False


def test_R4_item_changed_before_version_change_may_change_with_it() -> None:
    records = [ChangeRecord(at("2019-03-02"), False, frozenset({"history_days"}))]
    d = decide(Configure("flagship", {"history_days": 90}), NAME, pro(history_days=30),
               records, at("2019-03-10"), TZ, C)
    assert d.version_changed and d.after.items["history_days"] == 90


def test_R4_implicit_item_adjustments_do_not_count() -> None:
    d = decide(Configure("flagship"), NAME, pro(unlimited_av_rooms=True), [],
               at("2019-03-10"), TZ, C)
    assert d.after.items["unlimited_av_rooms"] is False  # ended by R4a
    assert d.after.items["history_days"] == 30  # raised to Flagship's free default
    assert d.items_changed == frozenset()


def test_R4_month_boundary_is_midnight_in_billing_zone() -> None:
    from zoneinfo import ZoneInfo

    shanghai = ZoneInfo("Asia/Shanghai")
    # 2019-03-31 16:00 UTC is already 2019-04-01 00:00 in Shanghai
    records = [ChangeRecord(at("2019-03-10"), True)]
    d = decide(Configure("flagship"), NAME, pro(), records, at("2019-03-31T16:00:00"),
               shanghai, C)
    assert d.version_changed
    refused(lambda: decide(Configure("flagship"), NAME, pro(), records,
                           at("2019-03-31T15:59:59"), shanghai, C), "R4")


def test_R4_disable_allowed_after_changes_this_month() -> None:
    records = [ChangeRecord(at("2019-03-02"), True)]
    d = decide(Disable(NAME), NAME, pro(), records, at("2019-03-03"), TZ, C)
    assert d.after.status == "disabled" and d.after.edition == "pro"


def test_R4_changeable_reports_next_month() -> None:
    records = [ChangeRecord(at("2019-03-02"), False, frozenset({"history_days"}))]
    can, later = changeable(pro(history_days=30), records, at("2019-03-20"), TZ, C)
    assert can["history_days"] is False and later["history_days"] == at("2019-04-01")
    assert can["service_version"] is True and can["content_filtering"] is True
    assert can["unlimited_av_rooms"] is True
    can_f, _ = changeable(flagship(), [], at("2019-03-20"), TZ, C)
    assert can_f["unlimited_av_rooms"] is False  # not offered on Flagship


def test_R4a_unnamed_items_kept_when_valid() -> None:
    d = decide(Configure("flagship"), NAME, pro(content_filtering=True, groups_per_user=1000,
                                                 history_days=180), [], at("2019-03-10"), TZ, C)
    assert d.after.items == {"unlimited_av_rooms": False, "content_filtering": True,
                             "group_member_limit": 2000, "groups_per_user": 1000,
                             "history_days": 180}


def test_R4a_value_above_new_maximum_refuses() -> None:
    e = refused(lambda: decide(Configure("pro"), NAME, flagship(group_member_limit=3000), [],
                               at("2019-03-10"), TZ, C), "R8")
    assert "group_member_limit" in e.message


def test_R4a_value_above_maximum_may_be_named_down() -> None:
    d = decide(Configure("pro", {"group_member_limit": 2000}), NAME,
               flagship(group_member_limit=3000), [], at("2019-03-10"), TZ, C)
    assert d.after.items["group_member_limit"] == 2000


def test_R6_disabled_app_refuses_everything() -> None:
    gone = AppPlan("disabled", "pro", C.free_items("pro"))
    for op in (Upgrade("pro"), Configure("flagship"), Configure("trial"), Disable(NAME),
               Configure(None, {"content_filtering": True})):
        e = refused(lambda op=op: decide(op, NAME, gone, [], at("2019-05-01"), TZ, C), "R6")
        assert e.code == 60016


def test_R6_disable_needs_the_exact_name() -> None:
    refused(lambda: decide(Disable("Demo"), NAME, pro(), [], at("2019-05-01"), TZ, C), "R6")


@pytest.mark.parametrize(
    ("current", "op"),
    [
        (pro(), Configure(None, {"group_member_limit": 2001})),
        (pro(), Configure(None, {"group_member_limit": 199})),
        (pro(), Configure(None, {"history_days": 60})),
        (flagship(), Configure(None, {"unlimited_av_rooms": True})),
        (flagship(), Configure(None, {"groups_per_user": 3001})),
        (flagship(), Configure(None, {"history_days": 7})),
        (pro(), Configure(None, {"content_filtering": 1})),
        (pro(), Configure(None, {"group_member_limit": True})),
        (pro(), Configure("pro")),
        (pro(), Configure(None, {})),
        (pro(content_filtering=True), Configure(None, {"content_filtering": True})),
        (pro(), Configure("enterprise")),
    ],
)
def test_R8_invalid_requests_refused(current: AppPlan, op: Configure) -> None:
    refused(lambda: decide(op, NAME, current, [], at("2019-03-10"), TZ, C), "R8")
