"""The catalog file says what SPEC §2–§3 say (figures typed in by hand from the SPEC)."""

from decimal import Decimal

import pytest

from imcloud.catalog import load


def test_catalog_edition_limits_match_spec() -> None:
    c = load()
    assert c.edition("trial").limits == {
        "accounts": 100, "dau": 100, "groups_per_user": 50, "group_members": 20,
        "groups": 100, "av_rooms": 10, "history_days": 7, "net_new_groups_per_day": 10000,
    }
    assert c.edition("pro").limits == {
        "accounts": None, "dau": None, "groups_per_user": 500, "group_members": 200,
        "groups": None, "av_rooms": 50, "history_days": 7, "net_new_groups_per_day": 10000,
    }
    assert c.edition("flagship").limits == {
        "accounts": None, "dau": None, "groups_per_user": 1000, "group_members": 2000,
        "groups": None, "av_rooms": None, "history_days": 30, "net_new_groups_per_day": 10000,
    }
    assert c.edition("flagship").community and not c.edition("pro").community
    assert c.edition("flagship").community_members == 100000


def test_catalog_labels_and_base_fees() -> None:
    c = load()
    assert [c.edition(k).label for k in ("trial", "pro", "flagship")] == [
        "Trial Edition", "Pro Edition-Postpaid", "Flagship Edition-Postpaid"]
    assert c.edition("trial").base_fee == Decimal("0.00")
    assert c.edition("pro").base_fee == Decimal("149.99")
    assert c.edition("flagship").base_fee == Decimal("449.99")


@pytest.mark.parametrize(
    ("item", "edition", "value", "price"),
    [
        ("unlimited_av_rooms", "pro", True, "149.99"),
        ("unlimited_av_rooms", "pro", False, "0.00"),
        ("group_member_limit", "pro", 200, "0.00"),
        ("group_member_limit", "pro", 201, "79.99"),
        ("group_member_limit", "pro", 2000, "79.99"),
        ("group_member_limit", "flagship", 6000, "79.99"),
        ("groups_per_user", "pro", 1000, "149.99"),
        ("groups_per_user", "flagship", 3000, "149.99"),
        ("content_filtering", "pro", True, "149.99"),
        ("content_filtering", "flagship", True, "149.99"),
        ("history_days", "pro", 7, "0.00"),
        ("history_days", "pro", 30, "79.99"),
        ("history_days", "pro", 90, "149.99"),
        ("history_days", "pro", 180, "229.99"),
        ("history_days", "pro", 360, "379.99"),
        ("history_days", "flagship", 30, "0.00"),
        ("history_days", "flagship", 90, "79.99"),
        ("history_days", "flagship", 180, "149.99"),
        ("history_days", "flagship", 360, "299.99"),
    ],
)
def test_catalog_item_prices(item: str, edition: str, value: bool | int, price: str) -> None:
    assert load().offer(item, edition).price_of(value) == Decimal(price)


def test_catalog_item_offers_and_ranges() -> None:
    c = load()
    assert not c.offer("unlimited_av_rooms", "flagship").offered
    assert not any(c.offer(k, "trial").offered for k in c.items)
    pro_members = c.offer("group_member_limit", "pro")
    assert pro_members.allowed(200) and pro_members.allowed(2000)
    assert not pro_members.allowed(199) and not pro_members.allowed(2001)
    assert not c.offer("groups_per_user", "flagship").allowed(3001)
    assert not c.offer("history_days", "pro").allowed(60)
    assert not c.offer("history_days", "flagship").allowed(7)
    assert c.offer("history_days", "flagship").allowed(30)


def test_catalog_overage_units() -> None:
    c = load()
    assert (c.overage["dau"].free, c.overage["dau"].unit) == (10000, 10000)
    assert (c.overage["groups"].free, c.overage["groups"].unit) == (100000, 100000)
    assert c.overage["dau"].price == c.overage["groups"].price == Decimal("149.99")
