"""Bills, usage charts and content-filter words in a real browser: every page renders
without a browser-console error, the CSV download is the CLI's CSV, the charts carry
the recorded figures and the plan's limits, words can be added and removed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import _pg_admin, _pg_url_for, need_postgres, run
from tests.console.conftest import (
    PASSWORDS,
    ConsoleServer,
    ThreadCli,
    api_client,
    in_thread,
    new_console_db,
    screenshot,
    sign_in_browser,
)


def test_bills_usage_and_filter_pages_in_chromium(tmp_path: Path,
                                                  new_page: Callable[[], Any]) -> None:
    db, imcloud = new_console_db(tmp_path)
    app = str(imcloud("app", "create", "demo-chat", "--owner", "alice")["sdkappid"])
    trial = str(imcloud("app", "create", "live-events", "--owner", "alice")["sdkappid"])
    # February: Trial until the 10th, then Pro (AV rooms 10 → 50); usage every day
    for day in range(1, 29):
        imcloud("usage", "record", app, "--date", f"2019-02-{day:02d}",
                "--dau", str(18 + day * 3 + (day % 4) * 5),
                "--groups", str(min(95, 12 + day * 4)),
                "--av-rooms", str(min(9, 2 + day // 2) if day < 10 else 6 + day // 2))
    imcloud("clock", "set", "2019-02-10")
    imcloud("app", "upgrade", app, "--edition", "pro")
    imcloud("clock", "set", "2019-03-05")
    imcloud("app", "configure", app, "--content-filtering", "on")
    for day in range(1, 6):
        imcloud("usage", "record", app, "--date", f"2019-03-{day:02d}", "--dau", "120",
                "--groups", "130", "--av-rooms", "21")
    imcloud("clock", "set", "2019-04-03")
    imcloud("bill", "run")

    server = ConsoleServer(db, tmp_path)
    try:
        base = server.base
        page = new_page()
        sign_in_browser(page, base, "alice")

        # bills: February is free (the month of the upgrade, B2); March is Pro 149.99 +
        # content filtering 149.99
        page.goto(f"{base}/console/apps/{app}/bills")
        rows = page.locator("[data-testid=bills] tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("2019-03")
        expect(rows.nth(0).get_by_test_id("bill-total")).to_have_text("$299.98")
        expect(rows.nth(1).get_by_test_id("bill-total")).to_have_text("$0.00")
        rows.nth(0).get_by_role("link", name="Details").click()
        expect(page.get_by_test_id("bill-total")).to_have_text("$299.98")
        lines = page.locator("[data-testid=bill-lines] tbody tr")
        expect(lines).to_have_count(2)
        expect(page.locator('[data-testid=bill-lines] [data-item="content_filtering"]')
               ).to_contain_text("$149.99")
        screenshot(page, "bill")
        with page.expect_download() as download:
            page.get_by_test_id("csv").click()
        csv_bytes = Path(download.value.path()).read_bytes()
        cli_csv = imcloud.raw("bill", "show", app, "--month", "2019-03", "--csv").stdout_bytes
        assert csv_bytes == cli_csv
        assert download.value.suggested_filename == f"{app}-201903.csv"

        page.goto(f"{base}/console/apps/{trial}/bills")
        expect(page.get_by_test_id("no-bills")).to_be_visible()

        # usage: February's bars and the limits in force each day
        page.goto(f"{base}/console/apps/{app}/usage?month=2019-02")
        for key in ("dau", "groups", "av_rooms"):
            expect(page.locator(f"#chart-{key} rect.bar")).to_have_count(28)
        bar = page.locator('#chart-dau rect.bar[data-date="2019-02-05"]')
        expect(bar).to_have_attribute("data-value", str(18 + 15 + 5))
        expect(page.locator("#chart-dau path.limit")).to_have_count(1)  # Trial's 100
        expect(page.locator("#chart-av_rooms .limit-label")).to_have_text("limit 50")
        expect(page.locator("[data-testid=chart-groups]")).to_contain_text("Peak 95")
        screenshot(page, "usage", full_page=True)
        page.fill("input[type=month]", "2019-03")
        page.wait_for_url("**/usage?month=2019-03")
        expect(page.locator('#chart-av_rooms rect.bar[data-date="2019-03-05"]')
               ).to_have_attribute("data-value", "21")
        expect(page.locator("#chart-groups path.limit")).to_have_count(0)  # unlimited

        # content-filter words, while the item is on
        page.goto(f"{base}/console/apps/{app}/filter")
        page.get_by_test_id("words-input").fill("Spoiler\nbig leak\n")
        page.get_by_test_id("add-words").click()
        expect(page.locator("[data-testid=words] li")).to_have_count(2)
        expect(page.get_by_test_id("notice")).to_have_text("Added.")
        screenshot(page, "content-filter")
        page.locator('[data-testid=words] li[data-word="spoiler"]').get_by_test_id(
            "remove-word").click()
        expect(page.locator("[data-testid=words] li")).to_have_count(1)
        words = api_client(base, "alice").get(f"/console/api/apps/{app}/filter-words")
        assert words.json() == {"sdkappid": int(app), "words": ["big leak"]}
        page.get_by_test_id("add-words").click()  # nothing typed: a clear error
        expect(page.get_by_test_id("form-error")).to_contain_text("Type a word")

        page.goto(f"{base}/console/apps/{trial}/filter")
        expect(page.get_by_test_id("filter-off")).to_contain_text("Upgrade")
    finally:
        server.stop()


@pytest.mark.postgres
def test_console_smoke_on_postgresql(tmp_path: Path, new_page: Callable[[], Any]) -> None:
    base = need_postgres()
    name = f"imcloud_console_{os.getpid()}"
    in_thread(run, _pg_admin(base, f"DROP DATABASE IF EXISTS {name}",
                             f"CREATE DATABASE {name}"))
    try:
        db = _pg_url_for(base, name)
        imcloud = ThreadCli(db)
        imcloud("init", "--simulated-clock", "2019-02-10")
        imcloud("console", "add-user", "alice", "--password", PASSWORDS["alice"])
        server = ConsoleServer(db, tmp_path)
        try:
            page = new_page()
            sign_in_browser(page, server.base, "alice")
            page.get_by_test_id("create-app").click()
            page.fill("#create-dialog input[name=name]", "pg-app")
            page.get_by_test_id("create-confirm").click()
            page.get_by_role("button", name="Upgrade").click()
            dialog = page.locator("#upgrade-dialog")
            dialog.locator('input[type=checkbox][name="pro.unlimited_av_rooms"]').check()
            expect(dialog.get_by_test_id("monthly")).to_have_text("$299.98")
            dialog.get_by_test_id("confirm").click()
            expect(page.get_by_test_id("service-label")).to_have_text("Pro Edition-Postpaid")
        finally:
            server.stop()
    finally:
        in_thread(run, _pg_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
