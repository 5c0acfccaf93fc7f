"""The console's JSON API (/console/api/) answers with the CLI's `--json` shapes —
checked against the real CLI on the same database — refuses with
`{"error": {"code", "rule", "message"}}` (409 by a rule, 422 bad input), and is in
the OpenAPI schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Cli
from tests.console.conftest import ConsoleServer, api_client, new_console_db, sign_in_http


@dataclass
class Site:
    base: str
    imcloud: Cli


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("api")
    db, imcloud = new_console_db(tmp)
    imcloud("console", "add-user", "root", "--password", "root-long-password", "--admin")
    server = ConsoleServer(db, tmp)
    try:
        yield Site(server.base, imcloud)
    finally:
        server.stop()


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def refused(r: httpx.Response, status: int = 409) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "rule", "message"}
    return body["error"]  # type: ignore[no-any-return]


def test_api_answers_with_the_cli_json_shapes(site: Site) -> None:
    imcloud, api = site.imcloud, api_client(site.base, "alice")
    created = ok(api.post("/console/api/apps", json={"name": "api-app"}), 201)
    app = str(created["sdkappid"])
    assert len(created["secret_key"]) == 64
    shown = ok(api.get(f"/console/api/apps/{app}"))
    assert "secret_key" not in shown
    assert shown == imcloud("app", "show", app)
    assert {k: v for k, v in created.items() if k != "secret_key"} == shown
    assert ok(api.get(f"/console/api/apps/{app}/secret")) == {
        "sdkappid": int(app), "secret_key": created["secret_key"]}

    imcloud("clock", "set", "2019-02-10")
    preview = ok(api.post(f"/console/api/apps/{app}/preview",
                          json={"edition": "pro", "unlimited_av_rooms": True}))
    assert preview == imcloud("app", "preview", app, "--edition", "pro",
                              "--unlimited-av-rooms", "on")
    assert (preview["this_month"], preview["monthly_from_next_month"]) == ("0.00", "299.98")
    upgraded = ok(api.post(f"/console/api/apps/{app}/upgrade",
                           json={"edition": "pro", "unlimited_av_rooms": True}))
    assert upgraded == imcloud("app", "show", app)
    assert upgraded["label"] == "Pro Edition-Postpaid"

    imcloud("clock", "set", "2019-03-05")
    ok(api.post(f"/console/api/apps/{app}/configure", json={"content_filtering": True}))
    second = refused(api.post(f"/console/api/apps/{app}/configure",
                              json={"content_filtering": False}))
    assert second == imcloud.refused("app", "configure", app, "--content-filtering", "off")
    assert second["rule"] == "R4"
    assert refused(api.post(f"/console/api/apps/{app}/preview",
                            json={"content_filtering": False})) == second
    history = ok(api.get(f"/console/api/apps/{app}/history"))
    assert history == imcloud("app", "history", app)
    assert [h["actor"] for h in history] == ["console:alice"] * 3

    for day, dau in (("2019-03-01", 7), ("2019-03-02", 12)):
        imcloud("usage", "record", app, "--date", day, "--dau", str(dau), "--groups", "3")
    assert ok(api.get(f"/console/api/apps/{app}/usage?month=2019-03")) == imcloud(
        "usage", "show", app, "--month", "2019-03")
    assert ok(api.get(f"/console/api/apps/{app}/usage"))["month"] == "2019-03"

    imcloud("clock", "set", "2019-04-03")
    imcloud("bill", "run")
    assert ok(api.get(f"/console/api/apps/{app}/bills")) == imcloud("bill", "list", app)
    bill = ok(api.get(f"/console/api/apps/{app}/bills/2019-03"))
    assert bill == imcloud("bill", "show", app, "--month", "2019-03")
    csv = api.get(f"/console/api/apps/{app}/bills/2019-03/csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    cli_csv = imcloud.raw("bill", "show", app, "--month", "2019-03", "--csv").stdout_bytes
    assert csv.content == cli_csv
    assert refused(api.get(f"/console/api/apps/{app}/bills/2019-01"), 404)["rule"] == "B6"

    words = ok(api.post(f"/console/api/apps/{app}/filter-words",
                        json={"words": ["Spoiler", "leak"]}))
    assert words == {"sdkappid": int(app), "words": ["leak", "spoiler"]}
    assert ok(api.request("DELETE", f"/console/api/apps/{app}/filter-words",
                          json={"words": ["leak"]}))["words"] == ["spoiler"]
    assert ok(api.get(f"/console/api/apps/{app}/filter-words")) == imcloud(
        "filter", "list", app)

    wrong = refused(api.post(f"/console/api/apps/{app}/disable", json={"confirm": "API-APP"}))
    assert wrong["rule"] == "R6"
    disabled = ok(api.post(f"/console/api/apps/{app}/disable", json={"confirm": "api-app"}))
    assert disabled == imcloud("app", "show", app) and disabled["label"] == "Disabled"
    after = refused(api.post(f"/console/api/apps/{app}/downgrade"))
    assert (after["rule"], after["code"]) == ("R6", 60016)
    assert ok(api.get(f"/console/api/apps/{app}/bills/2019-03")) == bill  # still readable


def test_api_refuses_bad_input_and_strangers(site: Site) -> None:
    api = api_client(site.base, "alice")
    app = ok(api.post("/console/api/apps", json={"name": "inputs"}), 201)["sdkappid"]
    for path, body in ((f"/console/api/apps/{app}/upgrade", {"edition": "gold"}),
                       (f"/console/api/apps/{app}/upgrade",
                        {"edition": "pro", "group_member_limit": "many"}),
                       (f"/console/api/apps/{app}/configure", {"unknown_item": True}),
                       ("/console/api/apps", {"name": ""})):
        error = refused(api.post(path, json=body), 422)
        assert error["message"].startswith("invalid input") and error["rule"] is None
    assert refused(api.get(f"/console/api/apps/{app}/usage?month=March"), 422)
    error = refused(api.post(f"/console/api/apps/{app}/upgrade",
                             json={"edition": "pro", "group_member_limit": 9000}))
    assert error["rule"] == "R8" and "out of range" in error["message"]
    assert refused(api.post(f"/console/api/apps/{app}/configure", json={}))["rule"] == "R2"

    anon = httpx.Client(base_url=site.base)
    assert refused(anon.get("/console/api/apps"), 401)["message"].startswith("sign in")
    assert refused(anon.post("/console/api/login",
                             json={"username": "alice", "password": "nope"}), 401)
    # a cross-site form cannot sign in: only a JSON body is read
    r = anon.post("/console/api/login", data={"username": "alice", "password": "x"})
    assert r.status_code == 422

    # clock and bill runs are for admins
    assert refused(api.post("/console/api/clock", json={"now": "2030-01-01"}), 403)
    root = api_client(site.base, "root", "root-long-password")
    before = ok(root.get("/console/api/clock"))
    assert before["simulated"] is True
    moved = ok(root.post("/console/api/clock", json={"now": "2030-01-01"}))
    assert moved["now"].startswith("2030-01-01")
    back = refused(root.post("/console/api/clock", json={"now": "2020-01-01"}))
    assert "backwards" in back["message"]
    runs = ok(root.post("/console/api/bill-runs", json={}))
    assert all(set(r) == {"month", "bills", "new"} for r in runs)
    assert ok(root.get("/console/api/session"))["is_admin"] is True


def test_openapi_documents_the_console_api(site: Site) -> None:
    schema = httpx.get(f"{site.base}/openapi.json").json()
    paths = schema["paths"]
    for path, method in (("/console/api/apps", "get"), ("/console/api/apps", "post"),
                         ("/console/api/apps/{sdkappid}", "get"),
                         ("/console/api/apps/{sdkappid}/upgrade", "post"),
                         ("/console/api/apps/{sdkappid}/configure", "post"),
                         ("/console/api/apps/{sdkappid}/downgrade", "post"),
                         ("/console/api/apps/{sdkappid}/disable", "post"),
                         ("/console/api/apps/{sdkappid}/preview", "post"),
                         ("/console/api/apps/{sdkappid}/history", "get"),
                         ("/console/api/apps/{sdkappid}/bills", "get"),
                         ("/console/api/apps/{sdkappid}/bills/{month}", "get"),
                         ("/console/api/apps/{sdkappid}/bills/{month}/csv", "get"),
                         ("/console/api/apps/{sdkappid}/usage", "get"),
                         ("/console/api/apps/{sdkappid}/filter-words", "delete"),
                         ("/console/api/login", "post"), ("/console/api/clock", "post")):
        op = paths[path][method]
        assert op["tags"] == ["console"], path
        assert "409" in op["responses"] and "404" in op["responses"], path
    assert not any(p.startswith("/console/") and not p.startswith("/console/api/")
                   for p in paths)
    view = schema["components"]["schemas"]["AppView"]
    assert {"sdkappid", "label", "items", "limits", "changeable",
            "next_change_from"} <= set(view["properties"])
    refs = json.dumps(paths["/console/api/apps/{sdkappid}/upgrade"]["post"])
    assert "UpgradeBody" in refs and "ErrorBody" in refs


def test_dialog_preview_warns_before_history_shortens_R5(site: Site) -> None:
    imcloud = site.imcloud
    app = str(imcloud("app", "create", "history-app", "--owner", "alice")["sdkappid"])
    imcloud("app", "upgrade", app, "--edition", "pro", "--history-days", "90")
    imcloud("clock", "set", "2031-01-05")  # a later month: the version may change (R4)
    page = sign_in_http(site.base, "alice")
    token = page.csrf  # type: ignore[attr-defined]

    def preview(**fields: str) -> str:
        r = page.post(f"/console/apps/{app}/preview",
                      data={"csrf_token": token, "op": "configure", **fields})
        assert r.status_code == 200
        return r.text

    assert 'data-state="idle"' in preview(**{"edition": "pro", "pro.history_days": "90"})
    shorter = preview(**{"edition": "pro", "pro.history_days": "30"})
    assert 'data-testid="retention-warning"' in shorter
    assert "from 90 to 30 days" in shorter
    assert "retention-warning" not in preview(**{"edition": "pro",
                                                 "pro.history_days": "180"})
    assert "from 90 to 7 days" in preview(edition="trial")  # a downgrade ends the item
    refused = preview(**{"edition": "pro", "pro.group_member_limit": "5000"})
    assert 'data-state="refused"' in refused and "R8" in refused


def test_forms_show_clear_errors(site: Site) -> None:
    page = sign_in_http(site.base, "bob")
    token = page.csrf  # type: ignore[attr-defined]
    r = page.post("/console/apps", data={"csrf_token": token, "name": "名" * 30})
    assert r.status_code == 200 and 'data-testid="form-error"' in r.text
    assert "R8: an app name is 1 to 64 bytes" in r.text and "data-autoopen" in r.text
    app = page.post("/console/apps", data={"csrf_token": token, "name": "bob-app"})
    sdkappid = app.headers["location"].split("/")[3].split("?")[0]
    r = page.post(f"/console/apps/{sdkappid}/upgrade", data={
        "csrf_token": token, "edition": "pro", "pro.groups_per_user": "lots"})
    assert r.status_code == 200 and "R8</strong>: Groups per user: enter a whole number" in r.text
    r = page.post(f"/console/apps/{sdkappid}/disable", data={"csrf_token": token,
                                                               "confirm": "bob"})
    assert "R6</strong>: to disable, confirm with the app&#39;s name exactly" in r.text
    assert page.get(f"/console/apps/{sdkappid}/usage?month=soon").status_code == 200
    assert page.get(f"/console/apps/{sdkappid}/bills/2019-13").status_code == 404
