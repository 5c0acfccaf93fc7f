"""The console in a real browser (Debian's chromium, headless, driven by Playwright):
sign in, create an app, upgrade it with a cost preview checked against amounts worked
out by hand (B7), change its configuration, be refused a second change of one item in
an ordinary month (R4), disable it with its name (R6) — and save the screenshots the
README shows. Every page must leave the browser console free of errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import (
    ConsoleServer,
    api_client,
    new_console_db,
    screenshot,
    sign_in_browser,
)


def buttons(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("[data-testid=service-actions] button")
            .all_inner_texts()]


def open_dialog(page: Any, button: str, dialog: str) -> Any:
    page.locator("[data-testid=service-actions]").get_by_role("button", name=button).click()
    d = page.locator(f"#{dialog}")
    expect(d).to_be_visible()
    return d


def switch(dialog: Any, name: str) -> Any:
    return dialog.locator(f'input[type=checkbox][name="{name}"]')


def test_R1_R4_R6_B7_console_flow_in_chromium(tmp_path: Path,
                                               new_page: Callable[[], Any]) -> None:
    db, imcloud = new_console_db(tmp_path)
    server = ConsoleServer(db, tmp_path)
    try:
        base = server.base
        page = new_page()
        sign_in_browser(page, base, "alice")
        expect(page.get_by_text("No apps yet")).to_be_visible()
        expect(page.get_by_test_id("account-name")).to_have_text("alice")

        # create an app (it starts on Trial, on the simulated clock's 2019-02-01)
        page.get_by_test_id("create-app").click()
        page.fill("#create-dialog input[name=name]", "demo-chat")
        page.get_by_test_id("create-confirm").click()
        page.wait_for_url(re.compile(r"/console/apps/\d+\?done=created$"))
        app = int(page.url.split("/apps/")[1].split("?")[0])
        expect(page.get_by_test_id("service-label")).to_have_text("Trial Edition")
        assert buttons(page) == ["Upgrade", "Disable"]

        # the secret key is not in the page until asked for
        key = api_client(base, "alice").get(f"/console/api/apps/{app}/secret").json()
        assert re.fullmatch(r"[0-9a-f]{64}", key["secret_key"])
        assert key["secret_key"] not in page.content()
        page.get_by_test_id("show-key").click()
        expect(page.get_by_test_id("secret")).to_have_text(key["secret_key"])

        # two more apps of alice's, made with the CLI, for the app cards
        other = imcloud("app", "create", "support-desk", "--owner", "alice")["sdkappid"]
        imcloud("app", "create", "live-events", "--owner", "alice")
        imcloud("app", "upgrade", str(other), "--edition", "flagship", "--content-filtering")

        # 2019-02-10: upgrade to Pro with unlimited AV rooms. By hand (B2, B7): the
        # month of the upgrade is free, so 0.00 now; from March Pro 149.99 + AV rooms
        # 149.99 = 299.98 a month.
        imcloud("clock", "set", "2019-02-10")
        page.reload()
        upgrade = open_dialog(page, "Upgrade", "upgrade-dialog")
        expect(upgrade.get_by_test_id("this-month")).to_have_text("$0.00")
        expect(upgrade.get_by_test_id("monthly")).to_have_text("$149.99")
        upgrade.locator(".edition-option", has_text="Flagship").click()
        flagship = upgrade.locator('fieldset[data-edition="flagship"]')
        expect(flagship.locator('[data-item="unlimited_av_rooms"]')).to_contain_text(
            "Not supported")
        expect(upgrade.get_by_test_id("monthly")).to_have_text("$449.99")
        upgrade.locator(".edition-option", has_text="Pro").click()
        pro = upgrade.locator('fieldset[data-edition="pro"]')
        for item in ("content_filtering", "group_member_limit", "groups_per_user",
                     "history_days"):
            expect(pro.locator(f'[data-item="{item}"]')).to_be_visible()
        switch(upgrade, "pro.unlimited_av_rooms").check()
        expect(upgrade.get_by_test_id("this-month")).to_have_text("$0.00")
        expect(upgrade.get_by_test_id("monthly")).to_have_text("$299.98")
        screenshot(page, "upgrade-reminder")
        upgrade.get_by_test_id("confirm").click()
        page.wait_for_url(re.compile(r"\?done=upgrade$"))
        expect(page.get_by_test_id("service-label")).to_have_text("Pro Edition-Postpaid")
        assert buttons(page) == ["Change Configuration", "Disable"]
        expect(page.locator('[data-testid=items] [data-item="unlimited_av_rooms"] .value')
               ).to_have_text("On")
        expect(page.locator('[data-limit="av_rooms"] dd')).to_have_text("Unlimited")

        # 2019-03-05, an ordinary month: content filtering on costs 149.99 at once (B3)
        imcloud("clock", "set", "2019-03-05")
        page.reload()
        configure = open_dialog(page, "Change Configuration", "configure-dialog")
        row = configure.locator('fieldset[data-edition="pro"] [data-item="content_filtering"]')
        expect(row).to_contain_text("Can change this month")
        expect(configure.get_by_test_id("confirm")).to_be_disabled()  # nothing chosen yet
        switch(configure, "pro.content_filtering").check()
        expect(configure.get_by_test_id("this-month")).to_have_text("$149.99")
        expect(configure.get_by_test_id("monthly")).to_have_text("$449.97")
        screenshot(page, "change-configuration-reminder")
        configure.get_by_test_id("confirm").click()
        page.wait_for_url(re.compile(r"\?done=configure$"))
        held = page.locator('[data-testid=items] [data-item="content_filtering"]')
        expect(held).to_contain_text("On")
        expect(held).to_contain_text("next change from 2019-04-01")

        # a second change of the same item in March: refused (R4), in the preview and
        # on confirmation, and nothing changes
        r4 = ("R4: content_filtering was already changed this month; it may change "
              "again from 2019-04-01")
        configure = open_dialog(page, "Change Configuration", "configure-dialog")
        expect(configure.locator('fieldset[data-edition="pro"] '
                                 '[data-item="content_filtering"]')).to_contain_text(
            "Changed this month · next change from 2019-04-01")
        switch(configure, "pro.content_filtering").uncheck()
        expect(configure.get_by_test_id("preview-refused")).to_contain_text(r4)
        configure.get_by_test_id("confirm").click()
        page.wait_for_load_state()
        configure = page.locator("#configure-dialog")
        expect(configure).to_be_visible()
        expect(configure.get_by_test_id("dialog-error")).to_have_text(r4)
        assert imcloud("app", "show", str(app))["items"]["content_filtering"] is True
        configure.locator("[data-close]").first.click()

        # the app cards, and the Basic Configuration page with its history
        page.goto(f"{base}/console")
        expect(page.get_by_test_id("app-card")).to_have_count(3)
        screenshot(page, "app-cards")
        card = page.locator(f'[data-testid=app-card][data-sdkappid="{app}"]')
        expect(card.get_by_test_id("card-label")).to_have_text("Pro Edition-Postpaid")
        card.click()
        expect(page.get_by_test_id("history-entry")).to_have_count(3)
        expect(page.get_by_test_id("history-entry").first).to_contain_text(
            "Content filtering: Off → On")
        expect(page.get_by_test_id("history-entry").first).to_contain_text("console:alice")
        screenshot(page, "basic-configuration", full_page=True)

        # 2019-03-20, disable: irreversible, confirmed with the app's name. March is
        # charged in full already (B4), so it adds nothing; from April nothing is due.
        imcloud("clock", "set", "2019-03-20")
        page.reload()
        disable = open_dialog(page, "Disable", "disable-dialog")
        expect(disable.get_by_test_id("irreversible")).to_contain_text("cannot be undone")
        expect(disable.get_by_test_id("this-month")).to_have_text("$0.00")
        expect(disable.get_by_test_id("monthly")).to_have_text("$0.00")
        confirm = disable.get_by_test_id("confirm")
        expect(confirm).to_be_disabled()
        disable.get_by_test_id("confirm-name").fill("demo-cha")
        expect(confirm).to_be_disabled()
        disable.get_by_test_id("confirm-name").fill("demo-chat")
        expect(confirm).to_be_enabled()
        screenshot(page, "disable-reminder")
        confirm.click()
        page.wait_for_url(re.compile(r"\?done=disable$"))
        expect(page.get_by_test_id("service-label")).to_have_text("Disabled")
        expect(page.locator("[data-testid=service-actions] button")).to_have_count(0)
        expect(page.get_by_test_id("disabled-note")).to_be_visible()
        assert imcloud("app", "show", str(app))["status"] == "disabled"
    finally:
        server.stop()
