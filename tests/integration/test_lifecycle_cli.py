"""R1–R4, R4a, R6, R7, R8 through the real CLI on a real database (SQLite and PostgreSQL).

Each refusal is checked twice: the JSON error names the rule, and the app and its
history are exactly as before (nothing changed).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from tests.conftest import Cli, run


def new_app(imcloud: Cli, start: str = "2019-02-01", name: str = "demo") -> int:
    imcloud("init", "--simulated-clock", start)
    return int(imcloud("app", "create", name)["sdkappid"])


def state(imcloud: Cli, app: int) -> tuple[Any, Any]:
    return imcloud("app", "show", str(app)), imcloud("app", "history", str(app))


def assert_refused_unchanged(imcloud: Cli, app: int, rule: str, *args: str) -> dict[str, Any]:
    before = state(imcloud, app)
    error = imcloud.refused(*args)
    assert error["rule"] == rule, error
    assert state(imcloud, app) == before
    return error


def test_R1_upgrade_from_trial_takes_effect_at_once(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("clock", "set", "2019-02-10")
    shown = imcloud("app", "upgrade", str(app), "--edition", "pro", "--unlimited-av-rooms",
                    "--history-days", "30")
    assert shown["service_version"] == "Pro" and shown["label"] == "Pro Edition-Postpaid"
    assert shown["items"]["unlimited_av_rooms"] is True and shown["items"]["history_days"] == 30
    assert shown["limits"]["av_rooms"] is None and shown["limits"]["history_days"] == 30
    assert imcloud("app", "show", str(app)) == shown


def test_R1_upgrade_refused_on_postpaid(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("clock", "set", "2019-04-01")
    assert_refused_unchanged(imcloud, app, "R1", "app", "upgrade", str(app),
                             "--edition", "flagship")


def test_R2_configure_refused_on_trial(imcloud: Cli) -> None:
    app = new_app(imcloud)
    assert_refused_unchanged(imcloud, app, "R2", "app", "configure", str(app),
                             "--edition", "pro")
    assert_refused_unchanged(imcloud, app, "R2", "app", "downgrade", str(app))


def test_R2_configure_changes_version_and_items(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("clock", "set", "2019-03-05")
    shown = imcloud("app", "configure", str(app), "--edition", "flagship",
                    "--group-member-limit", "6000")
    assert shown["label"] == "Flagship Edition-Postpaid"
    assert shown["limits"]["group_members"] == 6000 and shown["limits"]["av_rooms"] is None


def test_R3_downgrade_ends_every_item(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("app", "upgrade", str(app), "--edition", "pro", "--unlimited-av-rooms",
            "--content-filtering", "--group-member-limit", "1000", "--groups-per-user", "800",
            "--history-days", "90")
    imcloud("clock", "set", "2019-03-01")
    shown = imcloud("app", "downgrade", str(app))
    assert shown["service_version"] == "Trial" and shown["label"] == "Trial Edition"
    assert shown["items"] == {"unlimited_av_rooms": False, "content_filtering": False,
                              "group_member_limit": 20, "groups_per_user": 50, "history_days": 7}
    assert shown["limits"] == {"accounts": 100, "dau": 100, "groups_per_user": 50,
                               "group_members": 20, "groups": 100, "av_rooms": 10,
                               "history_days": 7}


def test_R4_second_version_change_in_month_refused(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("clock", "set", "2019-02-10")
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("clock", "set", "2019-02-20")
    error = assert_refused_unchanged(imcloud, app, "R4", "app", "configure", str(app),
                                     "--edition", "flagship")
    assert "2019-03-01" in error["message"]
    assert_refused_unchanged(imcloud, app, "R4", "app", "downgrade", str(app))
    shown = imcloud("app", "show", str(app))
    assert shown["changeable"]["service_version"] is False
    assert shown["next_change_from"]["service_version"].startswith("2019-03-01T00:00:00")
    imcloud("clock", "set", "2019-03-01")
    assert imcloud("app", "configure", str(app), "--edition", "flagship")["service_version"] == (
        "Flagship")


def test_R4_item_twice_in_ordinary_month_refused(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("clock", "set", "2019-03-03")
    imcloud("app", "configure", str(app), "--content-filtering", "on")
    imcloud("clock", "set", "2019-03-20")
    assert_refused_unchanged(imcloud, app, "R4", "app", "configure", str(app),
                             "--content-filtering", "off")
    # another item is still free to change this month
    shown = imcloud("app", "configure", str(app), "--history-days", "30")
    assert shown["changeable"]["content_filtering"] is False
    assert shown["next_change_from"]["content_filtering"].startswith("2019-04-01")
    assert shown["changeable"]["history_days"] is False
    assert shown["changeable"]["groups_per_user"] is True


def test_R4_items_change_freely_after_version_change_in_month(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("clock", "set", "2019-02-10")
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    for day, value in (("11", "on"), ("12", "off"), ("13", "on")):
        imcloud("clock", "set", f"2019-02-{day}")
        shown = imcloud("app", "configure", str(app), "--content-filtering", value)
        assert shown["items"]["content_filtering"] is (value == "on")


def test_R4_disable_always_allowed(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("app", "upgrade", str(app), "--edition", "pro", "--content-filtering")
    shown = imcloud("app", "disable", str(app), "--confirm", "demo")
    assert shown["status"] == "disabled" and shown["label"] == "Disabled"
    assert shown["service_version"] == "Pro"


def test_R4a_items_carried_across_version_change(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("app", "upgrade", str(app), "--edition", "flagship", "--group-member-limit", "3000",
            "--history-days", "90", "--content-filtering")
    imcloud("clock", "set", "2019-03-01")
    error = assert_refused_unchanged(imcloud, app, "R8", "app", "configure", str(app),
                                     "--edition", "pro")
    assert "group_member_limit" in error["message"]
    shown = imcloud("app", "configure", str(app), "--edition", "pro",
                    "--group-member-limit", "2000")
    assert shown["items"] == {"unlimited_av_rooms": False, "content_filtering": True,
                              "group_member_limit": 2000, "groups_per_user": 1000,
                              "history_days": 90}
    imcloud("clock", "set", "2019-04-01")
    imcloud("app", "configure", str(app), "--unlimited-av-rooms", "on")
    imcloud("clock", "set", "2019-05-01")
    shown = imcloud("app", "configure", str(app), "--edition", "flagship")
    assert shown["items"]["unlimited_av_rooms"] is False  # ends on Flagship
    assert shown["items"]["group_member_limit"] == 2000  # Flagship's free default
    history = imcloud("app", "history", str(app))
    assert history[-1]["items_changed"] == []  # implicit adjustments don't count (R4)


def test_R6_no_operation_changes_a_disabled_app(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("app", "disable", str(app), "--confirm", "demo")
    imcloud("clock", "set", "2019-06-01")
    for args in (
        ("app", "upgrade", str(app), "--edition", "flagship"),
        ("app", "configure", str(app), "--edition", "flagship"),
        ("app", "configure", str(app), "--content-filtering", "on"),
        ("app", "downgrade", str(app)),
        ("app", "disable", str(app), "--confirm", "demo"),
    ):
        error = assert_refused_unchanged(imcloud, app, "R6", *args)
        assert error["code"] == 60016
    shown = imcloud("app", "show", str(app))
    assert not any(shown["changeable"].values())


def test_R6_disable_needs_the_name(imcloud: Cli) -> None:
    app = new_app(imcloud)
    assert_refused_unchanged(imcloud, app, "R6", "app", "disable", str(app), "--confirm", "Demo")


def test_R7_every_operation_recorded(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("clock", "set", "2019-02-10T09:30:00")
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("clock", "set", "2019-02-15")
    imcloud("app", "configure", str(app), "--unlimited-av-rooms", "on")
    imcloud.refused("app", "configure", str(app), "--edition", "flagship")  # R4: not recorded
    imcloud("clock", "set", "2019-03-02")
    imcloud("app", "disable", str(app), "--confirm", "demo")
    history = imcloud("app", "history", str(app))
    assert [h["operation"] for h in history] == ["create", "upgrade", "configure", "disable"]
    assert [h["at"][:19] for h in history] == [
        "2019-02-01T00:00:00", "2019-02-10T09:30:00", "2019-02-15T00:00:00",
        "2019-03-02T00:00:00"]
    assert all(h["actor"].startswith("cli") for h in history)
    assert history[1]["before"]["edition"] == "trial" and history[1]["after"]["edition"] == "pro"
    assert history[2]["items_changed"] == ["unlimited_av_rooms"]
    assert history[2]["before"]["items"]["unlimited_av_rooms"] is False
    assert history[2]["after"]["items"]["unlimited_av_rooms"] is True
    assert history[3]["after"]["status"] == "disabled"
    for prev, nxt in pairwise(history):
        assert nxt["before"] == prev["after"]


def test_R8_invalid_requests_refused(imcloud: Cli) -> None:
    app = new_app(imcloud)
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("clock", "set", "2019-03-01")
    for flags in (
        ("--group-member-limit", "2001"),
        ("--group-member-limit", "150"),
        ("--groups-per-user", "1001"),
        ("--history-days", "60"),
        ("--edition", "pro"),
        ("--content-filtering", "off"),
        ("--edition", "trial", "--history-days", "30"),
    ):
        assert_refused_unchanged(imcloud, app, "R8", "app", "configure", str(app), *flags)
    assert_refused_unchanged(imcloud, app, "R8", "app", "configure", str(app))
    imcloud("app", "configure", str(app), "--edition", "flagship")
    imcloud("clock", "set", "2019-04-01")
    assert_refused_unchanged(imcloud, app, "R8", "app", "configure", str(app),
                             "--unlimited-av-rooms", "on")


def test_R8_301st_app_refused(imcloud: Cli) -> None:
    from imcloud.catalog import load
    from imcloud.services import apps
    from imcloud.store.db import Database

    new_app(imcloud)

    async def fill() -> None:
        db = Database(imcloud.db_url)
        async with db.write() as conn:
            for i in range(299):
                await apps.create(conn, f"app{i}", load(), actor="test")
        await db.dispose()

    run(fill())
    assert len(imcloud("app", "list")) == 300
    error = imcloud.refused("app", "create", "one-too-many")
    assert error["rule"] == "R8" and "300" in error["message"]
    assert len(imcloud("app", "list")) == 300


def test_unknown_app_refused(imcloud: Cli) -> None:
    new_app(imcloud)
    error = imcloud.refused("app", "show", "1400000000")
    assert "1400000000" in error["message"]


def test_bad_usage_exits_2(imcloud: Cli) -> None:
    app = new_app(imcloud)
    assert imcloud.raw("app", "upgrade", str(app), "--edition", "gold").exit_code == 2
    assert imcloud.raw("clock", "set", "yesterday").exit_code == 2
    assert imcloud("app", "show", str(app))["service_version"] == "Trial"


def test_clock_never_goes_backwards(imcloud: Cli) -> None:
    new_app(imcloud, start="2019-02-10T12:00:00")
    assert imcloud("clock", "show") == {"now": "2019-02-10T12:00:00+00:00", "simulated": True}
    error = imcloud.refused("clock", "set", "2019-02-10T11:59:59")
    assert "backwards" in error["message"]
    assert imcloud("clock", "show")["now"] == "2019-02-10T12:00:00+00:00"
    assert imcloud("clock", "set", "2019-03-01")["now"] == "2019-03-01T00:00:00+00:00"


def test_clock_real_cannot_be_set(db_url: str) -> None:
    imcloud = Cli(db_url)
    imcloud("init")
    assert imcloud("clock", "show")["simulated"] is False
    assert "real time" in imcloud.refused("clock", "set", "2030-01-01")["message"]
    assert "real time" in imcloud.refused("init", "--simulated-clock", "2019-01-01")["message"]
