"""SPEC §5 reference scenarios through the CLI on a simulated clock: no refusal, and
`app show` reports the effective limits at each step (AV rooms 50 → unlimited → 50)."""

from __future__ import annotations

from tests.conftest import Cli


def start(imcloud: Cli) -> str:
    imcloud("init", "--simulated-clock", "2019-02-01")
    app = str(imcloud("app", "create", "scenario")["sdkappid"])
    assert imcloud("app", "show", app)["limits"]["av_rooms"] == 10  # Trial
    imcloud("clock", "set", "2019-02-10")
    shown = imcloud("app", "upgrade", app, "--edition", "pro")
    assert shown["label"] == "Pro Edition-Postpaid"
    assert shown["limits"]["av_rooms"] == 50
    return app


def av_rooms(imcloud: Cli, app: str) -> int | None:
    limit: int | None = imcloud("app", "show", app)["limits"]["av_rooms"]
    return limit


def test_scenario_1_av_rooms_on_and_off_in_upgrade_month(imcloud: Cli) -> None:
    app = start(imcloud)
    imcloud("clock", "set", "2019-02-15")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "on")
    assert av_rooms(imcloud, app) is None
    imcloud("clock", "set", "2019-02-25")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "off")
    assert av_rooms(imcloud, app) == 50
    imcloud("clock", "set", "2019-03-15")
    assert av_rooms(imcloud, app) == 50


def test_scenario_2_av_rooms_enabled_and_kept(imcloud: Cli) -> None:
    app = start(imcloud)
    imcloud("clock", "set", "2019-02-15")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "on")
    assert av_rooms(imcloud, app) is None
    imcloud("clock", "set", "2019-04-03")
    shown = imcloud("app", "show", app)
    assert shown["limits"]["av_rooms"] is None and shown["items"]["unlimited_av_rooms"] is True


def test_scenario_3_av_rooms_from_april(imcloud: Cli) -> None:
    app = start(imcloud)
    # "changed and restored in Feb"
    imcloud("clock", "set", "2019-02-20")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "on")
    imcloud("clock", "set", "2019-02-21")
    imcloud("app", "configure", app, "--unlimited-av-rooms", "off")
    imcloud("clock", "set", "2019-03-20")
    assert av_rooms(imcloud, app) == 50
    imcloud("clock", "set", "2019-04-01")
    shown = imcloud("app", "configure", app, "--unlimited-av-rooms", "on")
    assert shown["limits"]["av_rooms"] is None
    assert shown["changeable"]["unlimited_av_rooms"] is False
    assert shown["next_change_from"]["unlimited_av_rooms"].startswith("2019-05-01")
