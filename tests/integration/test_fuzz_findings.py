"""Regression tests for what the fuzzers (test_fuzz_v4.py, test_fuzz_openapi.py) found,
each named for the bug, over real HTTP to a real `imcloud serve` on SQLite and
PostgreSQL. Before the fixes each of these answered 10002 (v4) or 500 / a non-API shape
(console) and logged a traceback; the module's server must now log no error at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from imcloud.api.v4_schemas import MAX_CONTENT_DEPTH
from tests.integration import v4_fixtures as fx
from tests.integration.test_fuzz_v4 import nested
from tests.integration.test_v4_errors import custom, envelope, import_users, params, refused
from tests.integration.v4_fixtures import (
    APP_GROUPS,
    CREATE,
    GROUP_HISTORY,
    IMPORT,
    JOINED,
    MEMBERS,
    ROAM,
    SEND_GROUP,
    SENDMSG,
    Env,
    text,
)

INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module", params=fx.BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    yield from fx.serve(request)


def populated(env: Env) -> tuple[dict[str, Any], Any, str]:
    app, v = env.new_app("pro")
    import_users(v, ["a", "b"])
    gid = v.ok(
        CREATE,
        {
            "Owner_Account": "a",
            "Type": "Public",
            "Name": "g",
            "MemberList": [{"Member_Account": "b"}],
        },
    )["GroupId"]
    v.ok(SEND_GROUP, {"GroupId": gid, "From_Account": "a", "Random": 1, "MsgBody": text("x")})
    return app, v, gid


# ------------------------------------------------------------------ v4


def test_offsets_and_seqs_past_int64_are_10004_not_internal_errors(env: Env) -> None:
    """Offset, Next and ReqMsgSeq past a signed 64-bit integer reached the database
    driver, which cannot bind them: 10002 and a logged traceback (fuzzing)."""
    app, v, gid = populated(env)
    for value in (2**63, 2**64 - 1):
        for path, body, field in (
            (MEMBERS, {"GroupId": gid, "Offset": value}, "Offset"),
            (JOINED, {"Member_Account": "a", "Offset": value}, "Offset"),
            (APP_GROUPS, {"Next": value}, "Next"),
            (GROUP_HISTORY, {"GroupId": gid, "ReqMsgNumber": 5, "ReqMsgSeq": value}, "ReqMsgSeq"),
        ):
            refused(env, app, v, path, body, 10004, field)
    # the largest value that fits still works
    assert v.ok(MEMBERS, {"GroupId": gid, "Offset": INT64_MAX})["MemberList"] == []
    assert v.ok(APP_GROUPS, {"Next": INT64_MAX})["GroupIdList"] == []
    history = v.ok(GROUP_HISTORY, {"GroupId": gid, "ReqMsgNumber": 5, "ReqMsgSeq": INT64_MAX})
    assert [m["MsgSeq"] for m in history["RspMsgList"]] == [1]


def test_last_msg_key_past_int64_is_10004_not_an_internal_error(env: Env) -> None:
    """A LastMsgKey whose number does not fit a 64-bit integer: 10002 before (fuzzing)."""
    app, v = env.new_app()
    import_users(v, ["a", "b"])
    for key in ("9" * 30 + "_1_1", f"{2**63}_1_1", "18446744073709551615_1"):
        refused(
            env,
            app,
            v,
            ROAM,
            {
                "Operator_Account": "a",
                "Peer_Account": "b",
                "MaxCnt": 5,
                "MinTime": 0,
                "MaxTime": 10**9,
                "LastMsgKey": key,
            },
            10004,
            "LastMsgKey",
        )
    assert (
        v.ok(
            ROAM,
            {
                "Operator_Account": "a",
                "Peer_Account": "b",
                "MaxCnt": 5,
                "MinTime": 0,
                "MaxTime": 10**9,
                "LastMsgKey": f"{INT64_MAX}_1_1",
            },
        )["MsgList"]
        == []
    )


def test_msg_content_nested_too_deep_is_refused_so_history_stays_readable(env: Env) -> None:
    """A message whose MsgContent was nested ~250 levels deep was stored, and then every
    read of that group's or pair's history failed with 10002: the JSON encoder stops at
    255 levels (fuzzing). Now the message is refused up front and nothing is stored."""
    app, v, gid = populated(env)
    deep = {"Data": nested(260)}
    for path, body in (
        (
            SEND_GROUP,
            {
                "GroupId": gid,
                "From_Account": "a",
                "Random": 2,
                "MsgBody": [{"MsgType": "TIMCustomElem", "MsgContent": deep}],
            },
        ),
        (
            SENDMSG,
            {
                "From_Account": "a",
                "To_Account": "b",
                "MsgRandom": 2,
                "MsgBody": [{"MsgType": "TIMCustomElem", "MsgContent": deep}],
            },
        ),
        (
            SENDMSG,
            {
                "From_Account": "a",
                "To_Account": "b",
                "MsgRandom": 3,
                "MsgBody": [
                    {"MsgType": "TIMCustomElem", "MsgContent": {"Data": nested(MAX_CONTENT_DEPTH)}}
                ],
            },
        ),
    ):
        refused(env, app, v, path, body, 10004, "MsgContent")
    ok = {"Data": nested(MAX_CONTENT_DEPTH - 1)}  # with the element's own object: the limit
    v.ok(
        SENDMSG,
        {
            "From_Account": "a",
            "To_Account": "b",
            "MsgRandom": 4,
            "MsgBody": [{"MsgType": "TIMCustomElem", "MsgContent": ok}],
        },
    )
    roam = v.ok(
        ROAM,
        {
            "Operator_Account": "a",
            "Peer_Account": "b",
            "MaxCnt": 5,
            "MinTime": 0,
            "MaxTime": 4_294_967_295,
        },
    )
    assert [m["MsgBody"][0]["MsgContent"] for m in roam["MsgList"]] == [ok]
    assert v.ok(GROUP_HISTORY, {"GroupId": gid, "ReqMsgNumber": 5})["RspMsgList"]


def test_v4_body_over_one_mib_is_10004_and_not_read_to_the_end(env: Env) -> None:
    """Hardening: the body was read whole, whatever its size."""
    app, v = env.new_app()
    big = b'{"UserID": "' + b"a" * (1 << 20) + b'"}'
    with fx.unchanged(env.db_url, app["sdkappid"]):
        data = envelope(v.raw(IMPORT, content=big))
    assert data["ErrorCode"] == 10004 and "1 MiB" in data["ErrorInfo"], data

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"UserID": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    r = v.http.post(v.url(IMPORT), content=chunks())
    assert envelope(r)["ErrorCode"] == 10004
    assert v(IMPORT, {"UserID": "fits", "Nick": "n" * 60})["ErrorCode"] == 0


def test_duplicated_auth_parameters_are_refused_not_guessed(env: Env) -> None:
    """Hardening: with sdkappid, identifier or usersig given twice the last one counted;
    a proxy in front (a rate limiter, a WAF) may read the first. Refused in §7 order."""
    app, v = env.new_app()
    other, _ = env.new_app()
    good = params(v)
    base = "&".join(f"{k}={val}" for k, val in good.items())
    for extra, code in (
        (f"sdkappid={other['sdkappid']}", 60006),
        (f"sdkappid={app['sdkappid']}", 60006),
        ("identifier=administrator", 70003),
        (f"usersig={v.sig()}", 70003),
    ):
        url = f"{env.base}/v4/{IMPORT}?{extra}&{base}"
        with fx.unchanged(env.db_url, app["sdkappid"]):
            data = envelope(v.http.post(url, content=b'{"UserID": "dup"}'))
        assert data["ErrorCode"] == code, (extra, data)
    assert custom(v, IMPORT, good, b'{"UserID": "single"}')["ErrorCode"] == 0


# ------------------------------------------------------------------ console


@pytest.fixture(scope="module")
def console(env: Env) -> httpx.Client:
    env.imcloud("console", "add-user", "fuzzer", "--password", "fuzzer-password")
    client = httpx.Client(base_url=env.base, timeout=30)
    r = client.post(
        "/console/api/login", json={"username": "fuzzer", "password": "fuzzer-password"}
    )
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def test_console_sdkappid_past_bigint_is_404_not_500(env: Env, console: httpx.Client) -> None:
    """An SDKAppID in a console path past a BIGINT reached the driver: HTTP 500 and a
    traceback (schemathesis). It names no app: 404, like any app that does not exist."""
    for sdkappid in (2**63, 10**25):
        expected = {
            "error": {"code": None, "rule": None, "message": f"no app with SDKAppID {sdkappid}"}
        }
        for method, path, body in (
            ("GET", "", None),
            ("GET", "/bills", None),
            ("POST", "/configure", {}),
            ("POST", "/disable", {"confirm": "x"}),
        ):
            r = console.request(method, f"/console/api/apps/{sdkappid}{path}", json=body)
            assert (r.status_code, r.json()) == (404, expected), (path, r.text)
        page = console.get(f"/console/apps/{sdkappid}")
        assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    cli = env.imcloud.raw("app", "show", str(2**63))
    assert cli.exit_code == 1 and "no app with SDKAppID" in cli.stdout


def test_console_api_undecodable_body_is_422_in_the_api_error_shape(
    env: Env, console: httpx.Client
) -> None:
    """A body that is not even UTF-8 got FastAPI's bare 400 `{"detail": ...}`, neither
    documented nor the console API's error shape (schemathesis)."""
    app = console.post("/console/api/apps", json={"name": "mine"}).json()
    for path in (
        "/console/api/apps",
        f"/console/api/apps/{app['sdkappid']}/preview",
        f"/console/api/apps/{app['sdkappid']}/filter-words",
        "/console/api/login",
    ):
        r = console.post(path, content=b"\xff\xfe{", headers={"content-type": "application/json"})
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json() == {
            "error": {"code": None, "rule": None, "message": "invalid input: body: not valid JSON"}
        }
    # unknown API paths keep their status, in the same shape
    r = console.get("/console/api/nope")
    assert r.status_code == 404 and set(r.json()) == {"error"}


def test_console_filter_word_with_nul_or_lone_surrogate_is_422_not_500(
    env: Env, console: httpx.Client
) -> None:
    """Filter words with NUL (PostgreSQL cannot store it) or a lone surrogate (no
    encoding can) reached the database: 500 (schemathesis, stateful, PostgreSQL)."""
    app = console.post("/console/api/apps", json={"name": "words"}).json()["sdkappid"]
    url = f"/console/api/apps/{app}/filter-words"
    for word in (b'"a\\u0000b"', b'"\\ud800"', b'"x\\udfff"', b'"\\u0007bell"'):
        for method in ("POST", "DELETE"):
            r = console.request(
                method,
                url,
                content=b'{"words": [' + word + b"]}",
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 422, (word, method, r.text)
            assert r.json()["error"] == {
                "code": None,
                "rule": "E4",
                "message": "a filter word must be printable text",
            }
    assert console.get(url).json()["words"] == []
    refused = env.imcloud.refused("filter", "add", str(app), "tab\there")
    assert "printable" in refused["message"]


def test_console_app_name_with_nul_is_refused_not_500(env: Env, console: httpx.Client) -> None:
    """An app name with NUL reached PostgreSQL through the API and the page form: 500."""
    before = console.get("/console/api/apps").json()
    r = console.post(
        "/console/api/apps",
        content=b'{"name": "a\\u0000b"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 409 and r.json()["error"]["rule"] == "R8", r.text
    page = console.get("/console")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    r = console.post(
        "/console/apps",
        content=f"csrf_token={csrf.group(1)}&name=a%00b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and "1 to 64 bytes of printable text" in r.text
    assert console.get("/console/api/apps").json() == before


def test_console_sign_in_with_nul_in_the_username_is_a_wrong_password_not_500(
    env: Env,
) -> None:
    """A username with NUL reached PostgreSQL (the failed-attempt row): 500. No account
    can have such a name: the same answer as a wrong password."""
    for name in ("a\u0000b", "\u0000", "has space", "-dash-first"):
        r = httpx.post(
            f"{env.base}/console/api/login", json={"username": name, "password": "whatever-pw"}
        )
        assert (r.status_code, r.json()["error"]["message"]) == (
            401,
            "Wrong username or password.",
        ), (name, r.text)
    client = httpx.Client(base_url=env.base)
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    r = client.post(
        "/console/login",
        content=f"csrf_token={token.group(1)}&username=a%00b&password=whatever-pw",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and "Wrong username or password." in r.text
