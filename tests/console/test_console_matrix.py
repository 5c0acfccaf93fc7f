"""The console half of the isolation and auth matrix, over real HTTP to `imcloud serve`:
EVERY console route — pages and /console/api/, enumerated from the app's route table,
so a new route is covered without editing this file — with no session, with another
account's session, and with a missing or forged CSRF token. Each is refused the way
docs/console.md says (API: 401 / 404 / 403 as `{"error": ...}`; pages: a redirect to
sign-in / a 404 page / a 403 page), every response carries the security headers, and
nothing changes: every row of both accounts' apps, the app list and the clock are the
same afterwards. Cookies: HttpOnly, SameSite, Path=/console, Secure behind HTTPS.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from imcloud.api.app import create_app
from tests.console.conftest import (
    PASSWORDS,
    ConsoleServer,
    ThreadCli,
    api_client,
    csrf_of,
    new_console_db,
    sign_in_http,
)
from tests.integration import v4_fixtures as fx

# Routes anyone may call: the sign-in and first-run forms and the JSON sign-in.
PUBLIC = {
    ("GET", "/console/login"),
    ("POST", "/console/login"),
    ("GET", "/console/setup"),
    ("POST", "/console/setup"),
    ("POST", "/console/api/login"),
}
# Routes only a console admin may call (the deployment-wide operations).
ADMIN_ONLY = {("POST", "/console/api/clock"), ("POST", "/console/api/bill-runs")}
WRITES = {"POST", "DELETE", "PUT", "PATCH"}
MONTH = "2019-02"
# The dialogs' live preview is a fragment a page swaps in: signed out it is a 200 that
# says so (a 4xx would be a browser console error, docs/decisions.md 52).
FRAGMENTS = {("POST", "/console/apps/{sdkappid}/preview")}


def console_routes() -> list[tuple[str, str]]:
    """(method, path) of every console route in the app's route table."""
    app = create_app()
    try:  # FastAPI ≥ 0.120 keeps included routers as such
        from fastapi.routing import iter_route_contexts

        found = [(c.path, c.methods) for c in iter_route_contexts(app.router.routes)]
    except ImportError:  # pragma: no cover - older FastAPI
        found = [(r.path, getattr(r, "methods", None)) for r in app.routes]
    return sorted(
        {
            (m, p)
            for p, methods in found
            if p.startswith("/console")
            for m in (methods or ())
            if m != "HEAD"
        }
    )


ROUTES = console_routes()
GUARDED = [r for r in ROUTES if r not in PUBLIC]


def is_api(path: str) -> bool:
    return path.startswith("/console/api")


@dataclass
class Site:
    base: str
    db: str
    imcloud: ThreadCli
    alice_app: int  # Pro since February, with a bill for February and a filter word
    bob_app: int

    def url(self, path: str) -> str:
        return path.replace("{sdkappid}", str(self.alice_app)).replace("{month}", MONTH)

    def state(self) -> Any:
        """Every row of both apps, every app there is, and the clock."""
        return (
            {a: fx.snapshot(self.db, a) for a in (self.alice_app, self.bob_app)},
            self.imcloud("app", "list"),
            self.imcloud("clock", "show"),
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("matrix")
    db, imcloud = new_console_db(tmp)
    alice_app = imcloud("app", "create", "alice-app", "--owner", "alice")["sdkappid"]
    bob_app = imcloud("app", "create", "bob-app", "--owner", "bob")["sdkappid"]
    imcloud("clock", "set", "2019-02-10")
    imcloud("app", "upgrade", str(alice_app), "--edition", "pro", "--content-filtering")
    imcloud("filter", "add", str(alice_app), "durian")
    imcloud("clock", "set", "2019-03-03")
    imcloud("bill", "run")
    server = ConsoleServer(db, tmp)
    try:
        yield Site(server.base, db, imcloud, int(alice_app), int(bob_app))
    finally:
        fx._close_snapshots(db)
        logs = server.stop()
        assert "Traceback" not in logs, logs[-3000:]


# A body per write that would succeed for alice with the right credentials.
API_BODIES: dict[str, Any] = {
    "/console/api/apps": {"name": "sneaky"},
    "/console/api/apps/{sdkappid}/upgrade": {"edition": "flagship"},
    "/console/api/apps/{sdkappid}/configure": {"edition": "flagship"},
    "/console/api/apps/{sdkappid}/disable": {"confirm": "alice-app"},
    "/console/api/apps/{sdkappid}/preview": {},
    "/console/api/apps/{sdkappid}/filter-words": {"words": ["durian"]},
    "/console/api/clock": {"now": "2019-03-20"},
    "/console/api/bill-runs": {"month": "2019-03"},
}
FORM = {
    "name": "sneaky",
    "op": "disable",
    "edition": "flagship",
    "confirm": "alice-app",
    "words": "durian",
    "action": "remove",
    "content_filtering": "on",
}


def send(
    client: httpx.Client, site: Site, method: str, path: str, csrf: str | None
) -> httpx.Response:
    url = site.url(path)
    if is_api(path):
        headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
        body = API_BODIES.get(path) if method in WRITES else None
        return client.request(method, url, json=body, headers=headers)
    if method in WRITES:
        form = {**FORM, **({"csrf_token": csrf} if csrf is not None else {})}
        return client.request(method, url, data=form)
    return client.request(method, url)


def secure_headers(r: httpx.Response) -> None:
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (r.url, csp)
    assert r.headers.get("x-content-type-options") == "nosniff", r.url
    assert r.headers.get("referrer-policy") == "same-origin", r.url
    assert r.headers.get("x-frame-options") == "DENY", r.url
    assert r.headers.get("cache-control") == "no-store", r.url


def api_error(r: httpx.Response, status: int, message: str | None = None) -> None:
    assert r.status_code == status, (r.request.method, r.url, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "rule", "message"}, body
    if message is not None:
        assert body["error"]["message"] == message, body


def test_the_route_table_has_the_documented_console_routes() -> None:
    """The enumeration finds pages and API routes (not an empty matrix), and every public
    or admin-only route named above exists."""
    assert len(GUARDED) >= 30
    assert {p for _, p in ROUTES if is_api(p)} and {p for _, p in ROUTES if not is_api(p)}
    assert set(ROUTES) >= (PUBLIC | ADMIN_ONLY)
    assert ("GET", "/console/apps/{sdkappid}") in ROUTES


def test_no_session_is_refused_on_every_guarded_route(site: Site) -> None:
    before = site.state()
    anon = httpx.Client(base_url=site.base, timeout=30)
    for method, path in GUARDED:
        r = send(anon, site, method, path, "forged")
        secure_headers(r)
        if is_api(path):
            api_error(r, 401, "sign in first: POST /console/api/login")
        elif (method, path) in FRAGMENTS:
            assert r.status_code == 200 and "Your session has ended" in r.text, r.text
            assert "$" not in r.text and "alice-app" not in r.text
        else:
            assert r.status_code == 303, (method, path, r.status_code)
            assert r.headers["location"].startswith("/console/login"), (method, path)
            assert "imcloud_session" not in r.cookies
    # a session token that is not one: the same
    stale = httpx.Client(base_url=site.base, cookies={"imcloud_session": "x" * 43})
    for method, path in GUARDED:
        r = send(stale, site, method, path, "forged")
        if is_api(path):
            api_error(r, 401)
        elif (method, path) in FRAGMENTS:
            assert "Your session has ended" in r.text
        else:
            assert r.status_code == 303, (method, path, r.status_code)
    assert site.state() == before


def test_another_accounts_session_gets_404_on_every_route_of_the_app(site: Site) -> None:
    """Bob, signed in with a valid CSRF token, on alice's app: 404 everywhere, with the
    same answer as for an SDKAppID that does not exist (existence is not leaked)."""
    before = site.state()
    bob_api, bob_pages = api_client(site.base, "bob"), sign_in_http(site.base, "bob")
    token = bob_api.headers["X-CSRF-Token"]
    app_routes = [(m, p) for m, p in GUARDED if "{sdkappid}" in p]
    assert len(app_routes) >= 20
    for method, path in app_routes:
        if is_api(path):
            r = send(bob_api, site, method, path, token)
            api_error(r, 404, f"no app with SDKAppID {site.alice_app}")
        else:
            r = send(bob_pages, site, method, path, bob_pages.csrf)  # type: ignore[attr-defined]
            assert r.status_code == 404, (method, path, r.status_code)
            assert "alice-app" not in r.text and "durian" not in r.text
        secure_headers(r)
    assert [a["sdkappid"] for a in bob_api.get("/console/api/apps").json()] == [site.bob_app]
    assert "alice-app" not in bob_pages.get("/console").text
    assert site.state() == before


def test_a_missing_or_forged_csrf_token_is_403_on_every_write(site: Site) -> None:
    """Alice, signed in, on her own app, without the right token: 403 on every write
    route, before anything is read or written — and she is still signed in after."""
    before = site.state()
    alice_api, alice_pages = api_client(site.base, "alice"), sign_in_http(site.base, "alice")
    good = alice_api.headers.pop("X-CSRF-Token")
    writes = [(m, p) for m, p in GUARDED if m in WRITES]
    assert len(writes) >= 15
    for method, path in writes:
        for token in (None, "forged", good + "x", ""):
            client = alice_api if is_api(path) else alice_pages
            r = send(client, site, method, path, token)
            secure_headers(r)
            if is_api(path):
                api_error(r, 403)
                assert r.json()["error"]["message"].startswith("missing or wrong")
            else:
                assert r.status_code == 403, (method, path, token, r.status_code)
    # the sign-in forms need their own (double-submit) token
    for path in ("/console/login", "/console/setup"):
        r = alice_pages.post(
            path, data={"username": "alice", "password": PASSWORDS["alice"], "confirm": "x"}
        )
        assert r.status_code == 403, path
    assert alice_api.get("/console/api/session").status_code == 200
    assert alice_pages.get("/console").status_code == 200
    assert site.state() == before


def test_admin_only_routes_are_403_for_other_accounts(site: Site) -> None:
    before = site.state()
    alice = api_client(site.base, "alice")
    assert alice.get("/console/api/session").json()["is_admin"] is False
    for method, path in sorted(ADMIN_ONLY):
        r = send(alice, site, method, path, alice.headers["X-CSRF-Token"])
        api_error(r, 403, "only a console admin may do this")
    assert site.state() == before


def test_every_page_carries_the_security_headers(site: Site) -> None:
    alice = sign_in_http(site.base, "alice")
    pages = [p for m, p in ROUTES if m == "GET" and not is_api(p)]
    for path in pages:
        r = alice.get(site.url(path))
        assert r.status_code in (200, 303), (path, r.status_code)
        secure_headers(r)
    for path in (
        "/console/api/apps",
        f"/console/api/apps/{site.alice_app}",
        "/console/apps/1",
        "/console/nope",
    ):
        secure_headers(alice.get(path))


# ------------------------------------------------------------------ cookies


def cookie(r: httpx.Response, name: str) -> str:
    found = [c for c in r.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert len(found) == 1, r.headers.get_list("set-cookie")
    return found[0]


def flags(header: str) -> dict[str, str]:
    parts = [p.strip() for p in header.split(";")[1:]]
    return {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else "") for p in parts}


@pytest.mark.parametrize("https", [False, True], ids=["http", "behind-https-proxy"])
def test_cookies_are_httponly_samesite_and_secure_behind_https(site: Site, https: bool) -> None:
    headers = {"X-Forwarded-Proto": "https"} if https else {}
    client = httpx.Client(base_url=site.base, headers=headers, timeout=30)
    page = client.get("/console/login")
    anon = flags(cookie(page, "imcloud_csrf"))
    assert "httponly" in anon and anon["samesite"].lower() == "strict"
    assert anon["path"] == "/console" and ("secure" in anon) is https

    # a Secure cookie is not sent back over plain HTTP: this client is the proxy's side
    client.cookies.clear()
    r = client.post(
        "/console/login",
        data={
            "csrf_token": csrf_of(page.text),
            "username": "alice",
            "password": PASSWORDS["alice"],
        },
        headers={"Cookie": f"imcloud_csrf={page.cookies['imcloud_csrf']}"},
    )
    assert r.status_code == 303
    session = flags(cookie(r, "imcloud_session"))
    assert "httponly" in session and session["samesite"].lower() == "lax"
    assert session["path"] == "/console" and ("secure" in session) is https
    assert int(session["max-age"]) == 12 * 3600

    api = httpx.Client(base_url=site.base, headers=headers, timeout=30)
    r = api.post("/console/api/login", json={"username": "bob", "password": PASSWORDS["bob"]})
    assert r.status_code == 200
    session = flags(cookie(r, "imcloud_session"))
    assert "httponly" in session and session["samesite"].lower() == "lax"
    assert ("secure" in session) is https
    # signing out clears it with the same attributes
    token = r.cookies["imcloud_session"]
    api.cookies.clear()
    r = api.post(
        "/console/api/logout",
        headers={"X-CSRF-Token": r.json()["csrf_token"], "Cookie": f"imcloud_session={token}"},
    )
    assert r.status_code == 204
    cleared = flags(cookie(r, "imcloud_session"))
    assert cleared["max-age"] == "0" and ("secure" in cleared) is https
    assert "httponly" in cleared and cleared["path"] == "/console"
    assert re.search(r"imcloud_session=\"?\"?;", r.headers["set-cookie"])
