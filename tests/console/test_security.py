"""Console security over real HTTP against `imcloud serve`: another account's app is 404
everywhere (pages and API, never 403), every write needs its CSRF token, wrong
passwords are throttled, cookies are HttpOnly/SameSite (and Secure behind HTTPS), the
first-run page works once, and neither secret keys nor passwords reach the logs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from imcloud.store.db import Database
from imcloud.store.tables import apps, console_sessions
from tests.conftest import Cli, run
from tests.console.conftest import (
    PASSWORDS,
    ConsoleServer,
    ThreadCli,
    api_client,
    csrf_of,
    new_console_db,
    sign_in_http,
)


@dataclass
class Site:
    base: str
    db: str
    imcloud: Cli
    app: int  # alice's, upgraded to Pro in February, with a bill for February


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("security")
    db, imcloud = new_console_db(tmp)
    for user in ("carol", "dave"):
        imcloud("console", "add-user", user, "--password", f"{user}-long-password")
    app = imcloud("app", "create", "alice-app", "--owner", "alice")["sdkappid"]
    imcloud("clock", "set", "2019-02-10")
    imcloud("app", "upgrade", str(app), "--edition", "pro")
    imcloud("clock", "set", "2019-03-03")
    imcloud("bill", "run")
    server = ConsoleServer(db, tmp)
    try:
        yield Site(server.base, db, imcloud, int(app))
    finally:
        server.stop()


def _history(imcloud: Cli, app: int) -> object:
    return imcloud("app", "history", str(app))


def test_another_account_gets_404_on_pages_and_api(site: Site) -> None:
    bob = sign_in_http(site.base, "bob")
    bob_api = api_client(site.base, "bob")
    before = _history(site.imcloud, site.app)
    missing = 1399999999  # no app has it: 404 for both must look the same
    for app in (site.app, missing):
        for path in ("", "/bills", "/bills/2019-02", "/usage", "/filter"):
            r = bob.get(f"/console/apps/{app}{path}")
            assert r.status_code == 404, (path, r.status_code)
            assert "alice-app" not in r.text
        for path in ("/upgrade", "/configure", "/disable", "/preview", "/filter"):
            r = bob.post(f"/console/apps/{app}{path}", data={
                "csrf_token": bob.csrf, "op": "upgrade", "edition": "pro",  # type: ignore[attr-defined]
                "confirm": "alice-app", "words": "x"})
            assert r.status_code == 404, (path, r.status_code)
        expected = {"error": {"code": None, "rule": None,
                              "message": f"no app with SDKAppID {app}"}}
        api = f"/console/api/apps/{app}"
        for path in ("", "/secret", "/history", "/bills", "/bills/2019-02",
                     "/bills/2019-02/csv", "/usage", "/filter-words"):
            r = bob_api.get(api + path)
            assert (r.status_code, r.json()) == (404, expected), path
        for path, body in (("/upgrade", {"edition": "pro"}), ("/configure", {}),
                           ("/downgrade", None), ("/disable", {"confirm": "alice-app"}),
                           ("/preview", {}), ("/filter-words", {"words": ["x"]})):
            r = bob_api.post(api + path, json=body)
            assert (r.status_code, r.json()) == (404, expected), path
        r = bob_api.request("DELETE", api + "/filter-words", json={"words": ["x"]})
        assert (r.status_code, r.json()) == (404, expected)
    assert bob_api.get("/console/api/apps").json() == []
    assert "alice-app" not in bob.get("/console").text
    assert _history(site.imcloud, site.app) == before
    # while alice sees it
    alice = api_client(site.base, "alice")
    assert [a["sdkappid"] for a in alice.get("/console/api/apps").json()] == [site.app]


def test_a_post_without_csrf_token_is_refused(site: Site) -> None:
    alice = sign_in_http(site.base, "alice")
    token = alice.csrf  # type: ignore[attr-defined]
    before = _history(site.imcloud, site.app)
    for data in ({}, {"csrf_token": "forged"}):
        for path, form in (("/console/apps", {"name": "sneaky"}),
                           (f"/console/apps/{site.app}/configure",
                            {"edition": "trial"}),
                           (f"/console/apps/{site.app}/disable", {"confirm": "alice-app"}),
                           (f"/console/apps/{site.app}/preview", {"op": "disable"}),
                           (f"/console/apps/{site.app}/filter", {"words": "x"}),
                           ("/console/logout", {})):
            r = alice.post(path, data={**form, **data})
            assert r.status_code == 403, (path, data, r.status_code)
    assert _history(site.imcloud, site.app) == before
    assert alice.get("/console").status_code == 200  # still signed in
    assert "sneaky" not in alice.get("/console").text

    # the JSON API: the X-CSRF-Token header
    api = api_client(site.base, "alice")
    good = api.headers.pop("X-CSRF-Token")
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": token + "x"}):
        r = api.post("/console/api/apps", json={"name": "sneaky"}, headers=headers)
        assert r.status_code == 403 and r.json()["error"]["message"].startswith("missing")
        r = api.post(f"/console/api/apps/{site.app}/downgrade", headers=headers)
        assert r.status_code == 403
    assert _history(site.imcloud, site.app) == before
    r = api.post("/console/api/apps", json={"name": "made-with-token"},
                 headers={"X-CSRF-Token": good})
    assert r.status_code == 201 and r.json()["name"] == "made-with-token"

    # sign-in forms: the double-submit token
    anon = httpx.Client(base_url=site.base)
    r = anon.post("/console/login", data={"username": "alice",
                                          "password": PASSWORDS["alice"]})
    assert r.status_code == 403 and "imcloud_session" not in r.cookies


def test_wrong_passwords_are_throttled(site: Site) -> None:
    client = httpx.Client(base_url=site.base)
    token = csrf_of(client.get("/console/login").text)

    def attempt(password: str) -> str:
        r = client.post("/console/login", data={"csrf_token": token, "username": "carol",
                                                "password": password})
        if r.status_code == 303:
            return "signed in"
        m = re.search(r'data-testid="form-error">([^<]+)<', r.text)
        assert r.status_code == 200 and m, r.text
        return m.group(1)

    assert [attempt("nope") for _ in range(5)] == ["Wrong username or password."] * 5
    refused = attempt("carol-long-password")  # the right one, but locked
    assert re.fullmatch(r"Too many failed sign-ins for this account\. Try again in "
                        r"\d+ seconds\.", refused), refused
    r = httpx.post(f"{site.base}/console/api/login",
                   json={"username": "carol", "password": "carol-long-password"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert r.json()["error"]["message"].startswith("Too many failed sign-ins")
    # other accounts are not affected
    assert api_client(site.base, "dave", "dave-long-password").get("/console/api/session").json()[
        "username"] == "dave"
    r = httpx.post(f"{site.base}/console/api/login",
                   json={"username": "dave", "password": "wrong"})
    assert r.status_code == 401 and r.json()["error"]["message"] == (
        "Wrong username or password.")


def test_cookies_sessions_and_headers(site: Site) -> None:
    client = httpx.Client(base_url=site.base)
    page = client.get("/console/login")
    assert "httponly" in page.headers["set-cookie"].lower()
    assert "samesite=strict" in page.headers["set-cookie"].lower()
    r = client.post("/console/login", data={"csrf_token": csrf_of(page.text),
                                            "username": "alice",
                                            "password": PASSWORDS["alice"]})
    cookie = r.headers["set-cookie"]
    assert re.search(r"HttpOnly", cookie) and re.search(r"Path=/console", cookie)
    assert "samesite=lax" in cookie.lower() and "secure" not in cookie.lower()
    token = r.cookies["imcloud_session"]

    async def stored() -> list[str]:
        db = Database(site.db)
        try:
            async with db.read() as conn:
                return list(await conn.scalars(sa.select(console_sessions.c.token_hash)))
        finally:
            await db.dispose()

    hashes = run(stored())
    assert token not in hashes and hashlib.sha256(token.encode()).hexdigest() in hashes

    home = client.get("/console")
    for header in ("content-security-policy", "x-content-type-options", "x-frame-options",
                   "referrer-policy"):
        assert header in home.headers
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["cache-control"] == "no-store"

    # behind a TLS-terminating proxy the cookie is Secure
    proxied = httpx.Client(base_url=site.base, headers={"X-Forwarded-Proto": "https"})
    r = proxied.post("/console/api/login",
                     json={"username": "dave", "password": "dave-long-password"})
    assert "; secure" in r.headers["set-cookie"].lower()

    # signing out ends the session on the server, not only in the browser
    alice = sign_in_http(site.base, "alice")
    session = alice.cookies["imcloud_session"]
    r = alice.post("/console/logout", data={"csrf_token": alice.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303
    stale = httpx.Client(base_url=site.base, cookies={"imcloud_session": session})
    assert stale.get("/console").headers["location"].startswith("/console/login")
    assert stale.get("/console/api/apps").status_code == 401


def test_first_run_page_sets_the_first_admin_password_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'first.db'}"
    ThreadCli(db)("init", "--simulated-clock", "2019-02-01")
    server = ConsoleServer(db, tmp_path)
    try:
        client = httpx.Client(base_url=server.base)
        for path in ("/", "/console", "/console/login", "/console/apps/1400000000"):
            r = client.get(path, follow_redirects=True)
            assert str(r.url).endswith("/console/setup"), path
        token = csrf_of(r.text)
        assert "2019-02-01" in r.text  # the simulated clock is shown from the start
        r = client.post("/console/setup", data={"password": "the-first-pw",
                                                "confirm": "the-first-pw"})
        assert r.status_code == 403
        for password, confirm, error in (("short", "short", "at least 8"),
                                         ("the-first-pw", "different", "differ")):
            r = client.post("/console/setup", data={"csrf_token": token,
                                                    "password": password,
                                                    "confirm": confirm})
            assert r.status_code == 200 and error in r.text
        r = client.post("/console/setup", data={"csrf_token": token,
                                                "password": "the-first-pw",
                                                "confirm": "the-first-pw"})
        assert r.status_code == 303 and "imcloud_session" in r.cookies
        assert client.get("/console").status_code == 200
        # once set, the page is gone and cannot set it again
        other = httpx.Client(base_url=server.base)
        assert other.get("/console/setup").headers["location"] == "/console/login"
        page = other.get("/console/login")
        r = other.post("/console/setup", data={"csrf_token": csrf_of(page.text),
                                               "password": "taken-over-pw",
                                               "confirm": "taken-over-pw"})
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        r = httpx.post(f"{server.base}/console/api/login",
                       json={"username": "admin", "password": "the-first-pw"})
        assert r.status_code == 200 and r.json()["is_admin"] is True
    finally:
        server.stop()


def test_no_secret_key_or_password_in_logs(tmp_path: Path) -> None:
    db, imcloud = new_console_db(tmp_path)
    imcloud("app", "create", "from-cli", "--owner", "alice")
    server = ConsoleServer(db, tmp_path, env={"PYTHONUNBUFFERED": "1"})
    try:
        base = server.base
        api = api_client(base, "alice")
        created = api.post("/console/api/apps", json={"name": "from-api"}).json()
        assert len(created["secret_key"]) == 64
        for a in api.get("/console/api/apps").json():
            assert api.get(f"/console/api/apps/{a['sdkappid']}/secret").status_code == 200
            api.post(f"/console/api/apps/{a['sdkappid']}/preview",
                     json={"edition": "pro"})
        browser_like = sign_in_http(base, "alice")
        browser_like.post("/console/apps", data={"csrf_token": browser_like.csrf,  # type: ignore[attr-defined]
                                                 "name": "from-form"})
        for password in ("wrong-password-1", PASSWORDS["bob"]):
            httpx.post(f"{base}/console/api/login",
                       json={"username": "alice", "password": password})
            client = httpx.Client(base_url=base)
            token = csrf_of(client.get("/console/login").text)
            client.post("/console/login", data={"csrf_token": token, "username": "bob",
                                                "password": password})
    finally:
        logs = server.stop()

    async def secrets() -> list[str]:
        d = Database(db)
        try:
            async with d.read() as conn:
                return list(await conn.scalars(sa.select(apps.c.secret_key)))
        finally:
            await d.dispose()

    keys = run(secrets())
    assert len(keys) == 3
    assert "POST /console/login" in logs and "/secret" in logs  # the log is there
    for key in keys:
        assert key not in logs and key[:16] not in logs
    for password in (*PASSWORDS.values(), "wrong-password-1"):
        assert password not in logs
