"""For every error code of §7: a test that triggers it through the API, and compares a
snapshot of the app's rows before and after: nothing changed. R5 grandfathering and R6
(every call 60016 after disable) proven here.

Every call goes over real HTTP to a real `imcloud serve` on 127.0.0.1, on SQLite and on
PostgreSQL, signed with UserSigs from the independent `tls-sig-api-v2` package. The
snapshot is every row of the app in every table with an `sdkappid` column (apps,
plan_events, usage_daily, bills, im_app_counters, im_accounts, im_groups, im_members,
im_group_messages, im_c2c_messages, im_filter_words, im_active_users). Every reply is
HTTP 200 with ActionStatus, ErrorCode and ErrorInfo.

Not here, on purpose: 60007 (REST call frequency) and 10023 (message frequency) are rate
limits, tested in test_rate_limits.py (these servers run with them off), and 72000
(Trial DAU cap) is counted from WebSocket sessions (test_realtime.py). Concurrency (E1)
is in test_v4_limits.py.
"""

from __future__ import annotations

import base64
import json
import random
import time
import zlib
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import TLSSigAPIv2

from imcloud.api import v4
from imcloud.im import usersig
from imcloud.store.db import Database
from imcloud.store.tables import im_app_counters
from tests.conftest import run
from tests.integration import v4_fixtures as fx
from tests.integration.v4_fixtures import (
    ADD,
    APP_GROUPS,
    APPINFO,
    CHECK,
    CREATE,
    DELETE,
    DESTROY,
    GROUP_HISTORY,
    IMPORT,
    INFO,
    JOINED,
    MEMBERS,
    MODIFY,
    MULTI_IMPORT,
    REMOVE,
    ROAM,
    SEND_GROUP,
    SENDMSG,
    V4,
    Env,
    text,
)


@pytest.fixture(scope="module", params=fx.BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    yield from fx.serve(request)


@pytest.fixture(scope="module", params=fx.BACKENDS)
def bug_env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """A server for the tests of known bugs, which make it log errors."""
    yield from fx.serve(request, check_log=False)


ADMIN = "administrator"


# ------------------------------------------------------------------ helpers


def refused(env: Env, app: dict[str, Any], v: V4, path: str, body: Any, code: int,
            field: str | None = None, **kw: Any) -> dict[str, Any]:
    """The call fails with `code` (naming `field` in ErrorInfo) and changes nothing."""
    with fx.unchanged(env.db_url, app["sdkappid"]):
        data = v.fail(path, body, code, **kw)
    assert data["ErrorInfo"], data
    if field is not None:
        assert field in data["ErrorInfo"], data
    return data


def envelope(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, (r.status_code, r.text)
    data: dict[str, Any] = r.json()
    assert {"ActionStatus", "ErrorCode", "ErrorInfo"} <= set(data), data
    assert data["ActionStatus"] == ("OK" if data["ErrorCode"] == 0 else "FAIL"), data
    return data


def params(v: V4, **over: Any) -> dict[str, Any]:
    """The query of a normal admin call, with parameters replaced (None drops one)."""
    p: dict[str, Any] = {"sdkappid": v.sdkappid, "identifier": v.admin, "usersig": v.sig(),
                         "random": random.randint(0, 2**32 - 1), "contenttype": "json"}
    p.update(over)
    return {k: val for k, val in p.items() if val is not None}


def custom(v: V4, path: str, query: dict[str, Any], content: bytes = b"{}",
           method: str = "POST") -> dict[str, Any]:
    url = f"{v.base}/v4/{path}?" + "&".join(f"{k}={val}" for k, val in query.items())
    return envelope(v.http.request(method, url, content=content))


def pkg_sig(sdkappid: int, key: str, identifier: str = ADMIN, expire: int = 3600) -> str:
    return str(TLSSigAPIv2.TLSSigAPIv2(sdkappid, key).gen_sig(identifier, expire))


def repack(doc: Any) -> str:
    """A UserSig-shaped string around any JSON document (no signing)."""
    packed = zlib.compress(json.dumps(doc).encode())
    return base64.b64encode(packed).decode().translate(str.maketrans("+/=", "*-_"))


def import_users(v: V4, users: list[str]) -> None:
    for i in range(0, len(users), 100):
        v.ok(MULTI_IMPORT, {"Accounts": users[i:i + 100]})


def group_info(v: V4, gid: str) -> dict[str, Any]:
    info: dict[str, Any] = v.ok(INFO, {"GroupIdList": [gid]})["GroupInfo"][0]
    return info


def member_ids(v: V4, gid: str) -> set[str]:
    return {m["Member_Account"] for m in v.ok(MEMBERS, {"GroupId": gid})["MemberList"]}


def existing(v: V4, users: list[str]) -> list[str]:
    items = v.ok(CHECK, {"CheckItem": [{"UserID": u} for u in users]})["ResultItem"]
    return [i["UserID"] for i in items if i["AccountStatus"] == "Imported"]


def valid_bodies(gid: str, user: str, peer: str) -> dict[str, dict[str, Any]]:
    """A body for every command that would succeed on a healthy app with these rows."""
    bodies = {
        IMPORT: {"UserID": "newcomer"},
        MULTI_IMPORT: {"Accounts": ["newcomer2"]},
        CHECK: {"CheckItem": [{"UserID": user}]},
        DELETE: {"DeleteItem": [{"UserID": peer}]},
        CREATE: {"Type": "Public", "Name": "another"},
        DESTROY: {"GroupId": gid},
        INFO: {"GroupIdList": [gid]},
        MODIFY: {"GroupId": gid, "Name": "renamed"},
        ADD: {"GroupId": gid, "MemberList": [{"Member_Account": peer}]},
        REMOVE: {"GroupId": gid, "MemberToDel_Account": [peer]},
        MEMBERS: {"GroupId": gid},
        JOINED: {"Member_Account": user},
        APP_GROUPS: {"Limit": 10},
        SEND_GROUP: {"GroupId": gid, "Random": 5, "MsgBody": text("hi")},
        GROUP_HISTORY: {"GroupId": gid, "ReqMsgNumber": 5},
        SENDMSG: {"From_Account": user, "To_Account": peer, "MsgRandom": 5,
                  "MsgBody": text("hi")},
        ROAM: {"Operator_Account": user, "Peer_Account": peer, "MaxCnt": 5, "MinTime": 0,
               "MaxTime": 4_000_000_000},
        APPINFO: {},
    }
    assert set(bodies) == {f"{s}/{n}" for s, n in v4.COMMANDS}  # a new command needs one
    return bodies


def populated(env: Env, *upgrade: str) -> tuple[dict[str, Any], V4, str]:
    """An app with accounts, a group with members and messages, one-to-one messages."""
    app, v = env.new_app(*upgrade)
    import_users(v, ["owner", "peer", "other"])
    gid = v.ok(CREATE, {"Owner_Account": "owner", "Type": "Public", "Name": "g",
                        "MemberList": [{"Member_Account": "other"}]})["GroupId"]
    v.ok(SEND_GROUP, {"GroupId": gid, "From_Account": "owner", "Random": 1,
                      "MsgBody": text("one")})
    v.ok(SENDMSG, {"From_Account": "owner", "To_Account": "peer", "MsgRandom": 1,
                   "MsgBody": text("one")})
    return app, v, gid


def test_snapshot_covers_every_table_an_app_owns(env: Env) -> None:
    app, _, _ = populated(env)
    env.imcloud("filter", "add", str(app["sdkappid"]), "durian")
    snap = fx.snapshot(env.db_url, app["sdkappid"])
    assert set(snap) >= {  # and any table added later with an sdkappid column
        "apps", "plan_events", "usage_daily", "bills", "im_app_counters", "im_accounts",
        "im_groups", "im_members", "im_group_messages", "im_c2c_messages",
        "im_filter_words", "im_active_users"}
    for table in ("apps", "usage_daily", "im_app_counters", "im_accounts", "im_groups",
                  "im_members", "im_group_messages", "im_c2c_messages", "im_filter_words"):
        assert snap[table], table
    other, _ = env.new_app()
    assert fx.snapshot(env.db_url, other["sdkappid"])["im_accounts"] == []


# ------------------------------------------------------------------ 600xx: the app


def test_60012_missing_sdkappid_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    with fx.unchanged(env.db_url, app["sdkappid"]):
        for query in (params(v, sdkappid=None), params(v, sdkappid="")):
            data = custom(v, IMPORT, query, b'{"UserID": "x"}')
            assert data["ErrorCode"] == 60012, data
        # missing sdkappid wins over everything else that is wrong
        data = custom(v, "nope/nothing", params(v, sdkappid=None, usersig="garbage"), b"[")
        assert data["ErrorCode"] == 60012, data


def test_60006_invalid_or_unknown_sdkappid_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    unknown = 1999999999 if app["sdkappid"] != 1999999999 else 1999999998
    with fx.unchanged(env.db_url, app["sdkappid"]):
        for bad in ("abc", "-1", "1.5", "14e9", "0x10", "+1400000000",
                    "140000000000000", str(unknown), "0"):
            data = custom(v, IMPORT, params(v, sdkappid=bad), b'{"UserID": "x"}')
            assert data["ErrorCode"] == 60006, (bad, data)
        # a well-formed sig for the unknown app does not help
        sig = pkg_sig(unknown, app["secret_key"])
        data = custom(v, IMPORT, params(v, sdkappid=unknown, usersig=sig), b'{"UserID": "x"}')
        assert data["ErrorCode"] == 60006, data


def test_60016_R6_every_call_refused_after_disable(env: Env) -> None:
    app, v, gid = populated(env)
    sdkappid = app["sdkappid"]
    shown = env.imcloud("app", "disable", str(sdkappid), "--confirm", app["name"])
    assert shown["status"] == "disabled"
    bodies = valid_bodies(gid, "owner", "peer")
    with fx.unchanged(env.db_url, sdkappid):
        for path, body in bodies.items():  # every command of v4.COMMANDS
            data = v.fail(path, body, 60016)
            assert "disabled" in data["ErrorInfo"]
        # and whatever else is wrong with the call
        for query, content in (
            (params(v, usersig="garbage"), b"{}"),
            (params(v, usersig=None, identifier=None), b"{}"),
            (params(v, identifier="owner", usersig=v.sig("owner")), b"{}"),
            (params(v), b"not json"),
            (params(v, usersig=pkg_sig(sdkappid, app["secret_key"], expire=-10)), b"{}"),
        ):
            assert custom(v, CREATE, query, content)["ErrorCode"] == 60016
        assert custom(v, "nope/nothing", params(v))["ErrorCode"] == 60016
        assert custom(v, INFO, params(v), json.dumps(bodies[INFO]).encode(),
                      method="GET")["ErrorCode"] == 60016
        # nothing brings it back (R6): the CLI refuses with the same code
        for args in (("app", "upgrade", str(sdkappid), "--edition", "pro"),
                     ("app", "configure", str(sdkappid), "--edition", "pro")):
            error = env.imcloud.refused(*args)
            assert (error["rule"], error["code"]) == ("R6", 60016), error
    assert env.imcloud("app", "show", str(sdkappid))["status"] == "disabled"


# ------------------------------------------------------------------ 700xx: the UserSig


def test_70001_expired_usersig_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    sdkappid, key = app["sdkappid"], app["secret_key"]
    stale = [
        pkg_sig(sdkappid, key, expire=-10),  # the package, already past its expiry
        usersig.generate(sdkappid, key, ADMIN, expire=10, now=int(time.time()) - 100),
    ]
    for sig in stale:
        refused(env, app, v, IMPORT, {"UserID": "late"}, 70001, usersig=sig)
        refused(env, app, v, CREATE, {"Type": "Public", "Name": "late"}, 70001, usersig=sig)
    # expiry is real time, not the simulated clock (which stands in 2019)
    fresh = usersig.generate(sdkappid, key, ADMIN, expire=60)
    v.ok(CHECK, {"CheckItem": [{"UserID": "owner"}]}, usersig=fresh)


def test_70003_malformed_usersig_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    good = usersig.peek(v.sig())
    no_sig = {k: val for k, val in good.items() if k != "TLS.sig"}
    garbage = [
        "garbage", "", "%%%", "eJw*", "a" * 4000,
        base64.b64encode(b"not zlib at all").decode(),
        base64.b64encode(zlib.compress(b"not json")).decode(),
        repack([1, 2, 3]), repack(no_sig), repack({**good, "TLS.time": "soon"}),
        repack({**good, "TLS.ver": "1.0"}),
    ]
    for sig in garbage:
        refused(env, app, v, IMPORT, {"UserID": "x"}, 70003, usersig=sig)
    with fx.unchanged(env.db_url, app["sdkappid"]):  # no usersig parameter at all
        assert custom(v, IMPORT, params(v, usersig=None), b'{"UserID": "x"}')[
            "ErrorCode"] == 70003


def test_70009_bad_signature_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    other, _ = env.new_app()
    sdkappid = app["sdkappid"]
    good = usersig.peek(v.sig())
    forged = [
        pkg_sig(sdkappid, other["secret_key"]),  # right app and admin, wrong key
        pkg_sig(sdkappid, "0" * 64),
        repack({**good, "TLS.expire": 10**9}),  # tampered after signing
        repack({**good, "TLS.time": int(str(good["TLS.time"])) + 1}),
    ]
    for sig in forged:
        refused(env, app, v, IMPORT, {"UserID": "x"}, 70009, usersig=sig)
        refused(env, app, v, DESTROY, {"GroupId": "nope"}, 70009, usersig=sig)


def test_70013_usersig_for_another_identifier_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    someone = pkg_sig(app["sdkappid"], app["secret_key"], "someone")
    refused(env, app, v, IMPORT, {"UserID": "x"}, 70013, usersig=someone)
    # and the admin's sig presented under another identifier
    refused(env, app, v, IMPORT, {"UserID": "x"}, 70013, identifier="owner",
            usersig=v.sig(ADMIN))


def test_70014_usersig_for_another_sdkappid_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    other, _ = env.new_app()
    for sig in (pkg_sig(other["sdkappid"], other["secret_key"]),  # valid, for another app
                pkg_sig(other["sdkappid"], app["secret_key"])):
        refused(env, app, v, IMPORT, {"UserID": "x"}, 70014, usersig=sig)
        refused(env, app, v, CREATE, {"Type": "Public", "Name": "x"}, 70014, usersig=sig)


def test_60010_non_admin_identifier_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    for who in ("owner", "someone", "Administrator"):
        sig = pkg_sig(app["sdkappid"], app["secret_key"], who)
        refused(env, app, v, IMPORT, {"UserID": "x"}, 60010, identifier=who, usersig=sig)
        refused(env, app, v, CHECK, {"CheckItem": [{"UserID": "owner"}]}, 60010,
                identifier=who, usersig=sig)


# ------------------------------------------------------------------ 10003 / 10004


def test_10003_unknown_command_or_service_changes_nothing(env: Env) -> None:
    app, v, _ = populated(env)
    for path in ("im_open_login_svc/account_nope", "nope_svc/account_import",
                 "group_open_http_svc/send_c2c_msg", "foo/bar", "openim/create_group"):
        data = refused(env, app, v, path, {"UserID": "x"}, 10003)
        assert path in data["ErrorInfo"]
        with fx.unchanged(env.db_url, app["sdkappid"]):
            assert custom(v, path, params(v), b'{"UserID": "x"}', method="GET")[
                "ErrorCode"] == 10003


def test_10004_invalid_parameters_name_the_field_and_change_nothing(env: Env) -> None:
    app, v, gid = populated(env)
    raw_cases: list[tuple[str, bytes, str]] = [
        (IMPORT, b'{"UserID": ', "JSON"),
        (IMPORT, b"[]", "object"),
        (IMPORT, b'[{"UserID": "x"}]', "object"),
        (IMPORT, b'"x"', "object"),
        (IMPORT, b"5", "object"),
        (IMPORT, b"\xff\xfe", "JSON"),
        (CREATE, b'{"Type": "Public", "Name": "x",}', "JSON"),
    ]
    for path, content, field in raw_cases:
        with fx.unchanged(env.db_url, app["sdkappid"]):
            data = envelope(v.raw(path, content=content))
        assert data["ErrorCode"] == 10004, (content, data)
        assert field in data["ErrorInfo"], data
    long_id = "g" * 49
    cases: list[tuple[str, dict[str, Any], str]] = [
        (CREATE, {"Type": "Public", "Name": 123}, "Name"),
        (CREATE, {"Type": "Public"}, "Name"),
        (CREATE, {"Name": "x"}, "Type"),
        (CREATE, {"Type": "Public", "Name": "x" * 31}, "Name"),
        (CREATE, {"Type": "Public", "Name": "é" * 16}, "Name"),  # 16 chars, 32 bytes
        (CREATE, {"Type": "Public", "Name": "中" * 11}, "Name"),  # 11 chars, 33 bytes
        (CREATE, {"Type": "Public", "Name": ""}, "Name"),
        (CREATE, {"Type": "Public", "Name": "x", "GroupId": long_id}, "GroupId"),
        (CREATE, {"Type": "Public", "Name": "x", "GroupId": "é" * 25}, "GroupId"),
        (CREATE, {"Type": "Nope", "Name": "x"}, "Type"),
        (CREATE, {"Type": "Public", "Name": "x", "MaxMemberCount": 0}, "MaxMemberCount"),
        (CREATE, {"Type": "Public", "Name": "x", "MaxMemberCount": "many"},
         "MaxMemberCount"),
        (CREATE, {"Type": "Public", "Name": "x", "ApplyJoinOption": "Maybe"},
         "ApplyJoinOption"),
        (CREATE, {"Type": "Public", "Name": "x", "MemberList": [{"Member_Account": 7}]},
         "MemberList"),
        (CREATE, {"Type": "Public", "Name": "x", "Introduction": "i" * 241},
         "Introduction"),
        (IMPORT, {"UserID": "u" * 33}, "UserID"),
        (IMPORT, {"Nick": "no id"}, "UserID"),
        (MULTI_IMPORT, {"Accounts": []}, "Accounts"),
        (MULTI_IMPORT, {"Accounts": [f"u{i}" for i in range(101)]}, "Accounts"),
        (MULTI_IMPORT, {"Accounts": "owner"}, "Accounts"),
        (CHECK, {"CheckItem": [{"Nick": "x"}]}, "CheckItem"),
        (DELETE, {}, "DeleteItem"),
        (MODIFY, {"GroupId": gid, "Name": "x" * 31}, "Name"),
        (MODIFY, {"GroupId": gid, "MaxMemberNum": -1}, "MaxMemberNum"),
        (MODIFY, {"Name": "x"}, "GroupId"),
        (ADD, {"GroupId": gid, "MemberList": []}, "MemberList"),
        (ADD, {"GroupId": long_id, "MemberList": [{"Member_Account": "peer"}]}, "GroupId"),
        (REMOVE, {"GroupId": gid, "MemberToDel_Account": "other"}, "MemberToDel_Account"),
        (INFO, {"GroupIdList": []}, "GroupIdList"),
        (MEMBERS, {"GroupId": gid, "Limit": -1}, "Limit"),
        (JOINED, {}, "Member_Account"),
        (APP_GROUPS, {"Limit": 0}, "Limit"),
        (SEND_GROUP, {"GroupId": gid, "Random": 1, "MsgBody": []}, "MsgBody"),
        (SEND_GROUP, {"GroupId": gid, "MsgBody": text("x")}, "Random"),
        (SEND_GROUP, {"GroupId": gid, "Random": -1, "MsgBody": text("x")}, "Random"),
        (SEND_GROUP, {"GroupId": gid, "Random": 2**32, "MsgBody": text("x")}, "Random"),
        (SEND_GROUP, {"GroupId": gid, "Random": 1,
                      "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {}}]}, "MsgBody"),
        (SEND_GROUP, {"GroupId": gid, "Random": 1,
                      "MsgBody": [{"MsgType": "TIMNope", "MsgContent": {}}]}, "MsgBody"),
        (GROUP_HISTORY, {"GroupId": gid, "ReqMsgNumber": 0}, "ReqMsgNumber"),
        (GROUP_HISTORY, {"GroupId": gid}, "ReqMsgNumber"),
        (SENDMSG, {"From_Account": "owner", "MsgRandom": 1, "MsgBody": text("x")},
         "To_Account"),
        (SENDMSG, {"To_Account": "peer", "MsgRandom": 1, "MsgBody": {"Text": "x"}},
         "MsgBody"),
        (ROAM, {"Operator_Account": "owner", "Peer_Account": "peer", "MaxCnt": 5,
                "MinTime": 0}, "MaxTime"),
        (ROAM, {"Operator_Account": "owner", "Peer_Account": "peer", "MaxCnt": 5,
                "MinTime": 0, "MaxTime": 2**32}, "MaxTime"),
        (ROAM, {"Operator_Account": "owner", "Peer_Account": "peer", "MaxCnt": 5,
                "MinTime": 0, "MaxTime": 10**9, "LastMsgKey": "junk"}, "LastMsgKey"),
        (APPINFO, {"RequestField": "GroupNum"}, "RequestField"),
    ]
    for path, body, field in cases:
        refused(env, app, v, path, body, 10004, field)

    # the limits are bytes of UTF-8: 30 bytes of multi-byte text is a valid Name
    for name in ("é" * 15, "中" * 10, "x" * 30):
        g = v.ok(CREATE, {"Type": "Public", "Name": name})["GroupId"]
        assert group_info(v, g)["Name"] == name
        v.ok(MODIFY, {"GroupId": g, "Name": name[::-1]})
    v.ok(CREATE, {"Type": "Public", "Name": "x", "GroupId": "é" * 24})  # 48 bytes
    v.ok(IMPORT, {"UserID": "u" * 32})


# ------------------------------------------------------------------ limits


def test_70398_trial_101st_account_changes_nothing(env: Env) -> None:
    app, v = env.new_app()
    users = [f"user{i:03}" for i in range(100)]
    import_users(v, users[:60])
    import_users(v, users[60:])  # exactly 100: the limit, allowed
    refused(env, app, v, IMPORT, {"UserID": "user100"}, 70398)
    refused(env, app, v, MULTI_IMPORT, {"Accounts": ["user100"]}, 70398)
    # a batch that crosses 100 imports nobody, not even its first accounts
    refused(env, app, v, MULTI_IMPORT, {"Accounts": [*users[:5], "extra1", "extra2"]},
            70398)
    assert existing(v, ["extra1", "extra2", "user100"]) == []
    # importing accounts that exist is no new account: fine at the limit
    with fx.unchanged(env.db_url, app["sdkappid"]):
        v.ok(MULTI_IMPORT, {"Accounts": users[:10]})
        v.ok(IMPORT, {"UserID": users[0]})
    # deleting frees places; the batch must still fit as a whole
    v.ok(DELETE, {"DeleteItem": [{"UserID": u} for u in users[:3]]})
    refused(env, app, v, MULTI_IMPORT, {"Accounts": ["n1", "n2", "n3", "n4"]}, 70398)
    v.ok(MULTI_IMPORT, {"Accounts": ["n1", "n2", "n3"]})
    refused(env, app, v, IMPORT, {"UserID": "n4"}, 70398)
    assert existing(v, ["n1", "n2", "n3", "n4"]) == ["n1", "n2", "n3"]


def test_10058_trial_101st_group_changes_nothing(env: Env) -> None:
    app, v = env.new_app()
    kinds = ["Public", "Private", "ChatRoom", "Work", "Meeting"]
    made = [v.ok(CREATE, {"Type": kinds[i % 5], "Name": f"g{i}"})["GroupId"]
            for i in range(100)]
    for kind in ("Public", "Private", "ChatRoom"):
        refused(env, app, v, CREATE, {"Type": kind, "Name": "g100"}, 10058)
    refused(env, app, v, CREATE, {"Type": "Public", "Name": "g100", "GroupId": "mine"}, 10058)
    # AVChatRooms don't count toward the 100 groups
    room = v.ok(CREATE, {"Type": "AVChatRoom", "Name": "live"})["GroupId"]
    assert v.ok(APP_GROUPS, {"GroupType": "AVChatRoom"})["GroupIdList"] == [{"GroupId": room}]
    refused(env, app, v, CREATE, {"Type": "Public", "Name": "g100"}, 10058)
    # destroyed groups don't count
    v.ok(DESTROY, {"GroupId": made[0]})
    v.ok(CREATE, {"Type": "Public", "Name": "g100"})
    refused(env, app, v, CREATE, {"Type": "Public", "Name": "g101"}, 10058)
    assert v.ok(APP_GROUPS, {})["TotalCount"] == 101


def test_10036_trial_11th_av_room_changes_nothing(env: Env) -> None:
    app, v = env.new_app()
    for i in range(10):
        v.ok(CREATE, {"Type": "AVChatRoom", "Name": f"live{i}"})
    refused(env, app, v, CREATE, {"Type": "AVChatRoom", "Name": "live10"}, 10036)
    refused(env, app, v, CREATE, {"Type": "AVChatRoom", "Name": "x", "GroupId": "live-x"},
            10036)
    # rooms and groups are counted apart: groups can still be made
    v.ok(CREATE, {"Type": "Public", "Name": "not a room"})
    assert v.ok(APP_GROUPS, {"GroupType": "AVChatRoom"})["TotalCount"] == 10


def test_10037_groups_per_user_changes_nothing(env: Env) -> None:
    app, v = env.new_app()  # Trial: 50 groups per user
    import_users(v, ["busy", "free", "free2"])
    mine = [v.ok(CREATE, {"Owner_Account": "busy", "Type": ["Public", "Private"][i % 2],
                          "Name": f"b{i}"})["GroupId"] for i in range(50)]
    assert v.ok(JOINED, {"Member_Account": "busy"})["TotalCount"] == 50
    other = v.ok(CREATE, {"Owner_Account": "free", "Type": "Public", "Name": "o"})["GroupId"]
    refused(env, app, v, CREATE, {"Owner_Account": "busy", "Type": "Public", "Name": "x"},
            10037)
    refused(env, app, v, CREATE, {"Owner_Account": "free", "Type": "ChatRoom", "Name": "x",
                                  "MemberList": [{"Member_Account": "busy"}]}, 10037)
    refused(env, app, v, ADD, {"GroupId": other, "MemberList": [{"Member_Account": "busy"}]},
            10037)
    # all or nothing: free2 is not added either
    refused(env, app, v, ADD, {"GroupId": other, "MemberList": [
        {"Member_Account": "free2"}, {"Member_Account": "busy"}]}, 10037)
    assert member_ids(v, other) == {"free"}
    # AVChatRooms don't count
    room = v.ok(CREATE, {"Owner_Account": "busy", "Type": "AVChatRoom", "Name": "live"})
    assert room["GroupId"]
    assert v.ok(JOINED, {"Member_Account": "busy"})["TotalCount"] == 50
    # leaving a group makes room for one more
    v.ok(DESTROY, {"GroupId": mine[0]})
    v.ok(ADD, {"GroupId": other, "MemberList": [{"Member_Account": "busy"}]})
    refused(env, app, v, CREATE, {"Owner_Account": "busy", "Type": "Public", "Name": "y"},
            10037)


def test_10038_max_member_count_above_the_limit_changes_nothing(env: Env) -> None:
    trial, t = env.new_app()
    refused(env, trial, t, CREATE, {"Type": "Public", "Name": "x", "MaxMemberCount": 21},
            10038)
    refused(env, trial, t, CREATE, {"Type": "Private", "Name": "x", "MaxMemberCount": 2001},
            10038)
    g = t.ok(CREATE, {"Type": "Public", "Name": "x", "MaxMemberCount": 10})["GroupId"]
    refused(env, trial, t, MODIFY, {"GroupId": g, "MaxMemberNum": 21}, 10038)
    t.ok(MODIFY, {"GroupId": g, "MaxMemberNum": 20})
    assert group_info(t, g)["MaxMemberNum"] == 20
    assert group_info(t, t.ok(CREATE, {"Type": "ChatRoom", "Name": "d"})["GroupId"])[
        "MaxMemberNum"] == 20

    pro, p = env.new_app("pro")
    refused(env, pro, p, CREATE, {"Type": "Public", "Name": "x", "MaxMemberCount": 201},
            10038)
    g = p.ok(CREATE, {"Type": "Public", "Name": "x", "MaxMemberCount": 200})["GroupId"]
    refused(env, pro, p, MODIFY, {"GroupId": g, "MaxMemberNum": 201}, 10038)

    # the effective limit is the edition default raised by group_member_limit
    raised, r = env.new_app("pro", "--group-member-limit", "300")
    g = r.ok(CREATE, {"Type": "Public", "Name": "x", "MaxMemberCount": 300})["GroupId"]
    refused(env, raised, r, CREATE, {"Type": "Public", "Name": "y", "MaxMemberCount": 301},
            10038)
    refused(env, raised, r, MODIFY, {"GroupId": g, "MaxMemberNum": 301}, 10038)


def test_10014_group_full_changes_nothing(env: Env) -> None:
    app, v = env.new_app()
    import_users(v, [f"m{i}" for i in range(8)])
    gid = v.ok(CREATE, {"Owner_Account": "m0", "Type": "Public", "Name": "small",
                        "MaxMemberCount": 4, "MemberList": [{"Member_Account": "m1"}]}
               )["GroupId"]
    # a batch of 3 into 2 free places adds nobody (E2)
    data = refused(env, app, v, ADD, {"GroupId": gid, "MemberList": [
        {"Member_Account": u} for u in ("m2", "m3", "m4")]}, 10014)
    assert gid in data["ErrorInfo"] or "full" in data["ErrorInfo"]
    assert member_ids(v, gid) == {"m0", "m1"}
    # members already in, and accounts that don't exist, take no place
    added = v.ok(ADD, {"GroupId": gid, "MemberList": [
        {"Member_Account": u} for u in ("m1", "m2", "m3", "ghost")]})["MemberList"]
    assert [m["Result"] for m in added] == [2, 1, 1, 0]
    refused(env, app, v, ADD, {"GroupId": gid, "MemberList": [{"Member_Account": "m4"}]},
            10014)
    assert group_info(v, gid)["MemberNum"] == 4
    # a new group can't start with more members than its own cap
    refused(env, app, v, CREATE, {"Owner_Account": "m5", "Type": "Private", "Name": "x",
                                  "MaxMemberCount": 2,
                                  "MemberList": [{"Member_Account": "m6"},
                                                 {"Member_Account": "m7"}]}, 10014)
    # raising the cap lets one more in
    v.ok(MODIFY, {"GroupId": gid, "MaxMemberNum": 5})
    v.ok(ADD, {"GroupId": gid, "MemberList": [{"Member_Account": "m4"}]})
    refused(env, app, v, ADD, {"GroupId": gid, "MemberList": [{"Member_Account": "m5"}]},
            10014)


def test_10059_community_needs_flagship_changes_nothing(env: Env) -> None:
    trial, t = env.new_app()
    refused(env, trial, t, CREATE, {"Type": "Community", "Name": "c"}, 10059)
    pro, p = env.new_app("pro")
    refused(env, pro, p, CREATE, {"Type": "Community", "Name": "c"}, 10059)
    refused(env, pro, p, CREATE, {"Type": "Community", "Name": "c", "MaxMemberCount": 10},
            10059)
    _, f = env.new_app("flagship")
    gid = f.ok(CREATE, {"Type": "Community", "Name": "c"})["GroupId"]
    info = group_info(f, gid)
    assert (info["Type"], info["MaxMemberNum"]) == ("Community", 100_000)


def test_10007_no_permission_changes_nothing(env: Env) -> None:
    app, v = env.new_app()
    import_users(v, ["a", "b"])
    room = v.ok(CREATE, {"Type": "AVChatRoom", "Name": "live"})["GroupId"]
    refused(env, app, v, ADD, {"GroupId": room, "MemberList": [{"Member_Account": "a"}]},
            10007)
    refused(env, app, v, CREATE, {"Type": "AVChatRoom", "Name": "x",
                                  "MemberList": [{"Member_Account": "a"}]}, 10007)
    # a non-member may not speak in a (non-AV) group
    gid = v.ok(CREATE, {"Owner_Account": "a", "Type": "Private", "Name": "p"})["GroupId"]
    refused(env, app, v, SEND_GROUP, {"GroupId": gid, "From_Account": "b", "Random": 1,
                                      "MsgBody": text("hi")}, 10007)


async def _set_net_new_groups(db_url: str, sdkappid: int, day: date, n: int) -> None:
    db = Database(db_url)
    try:
        async with db.write() as conn:
            c = im_app_counters.c
            await conn.execute(sa.update(im_app_counters).where(c.sdkappid == sdkappid)
                               .values(day=day, net_new_groups=n))
    finally:
        await db.dispose()


def test_10006_net_new_groups_per_day_changes_nothing(env: Env) -> None:
    app, v = env.new_app()
    first = v.ok(CREATE, {"Type": "Public", "Name": "first"})["GroupId"]
    # 10,000 a day is too many to create over HTTP here: start the day at the limit
    run(_set_net_new_groups(env.db_url, app["sdkappid"], env.today(), 10_000))
    refused(env, app, v, CREATE, {"Type": "Public", "Name": "x"}, 10006)
    refused(env, app, v, CREATE, {"Type": "AVChatRoom", "Name": "x"}, 10006)
    refused(env, app, v, CREATE, {"Type": "Private", "Name": "x", "GroupId": "x"}, 10006)
    # net: a destroyed group lets one more in
    v.ok(DESTROY, {"GroupId": first})
    v.ok(CREATE, {"Type": "Public", "Name": "second"})
    refused(env, app, v, CREATE, {"Type": "Public", "Name": "third"}, 10006)


def test_10010_unknown_group_changes_nothing(env: Env) -> None:
    app, v, gid = populated(env)
    gone = v.ok(CREATE, {"Type": "Public", "Name": "short-lived"})["GroupId"]
    v.ok(DESTROY, {"GroupId": gone})
    for missing in ("no-such-group", "@TGS#nothing", gone):
        for path, body in (
            (DESTROY, {"GroupId": missing}),
            (ADD, {"GroupId": missing, "MemberList": [{"Member_Account": "peer"}]}),
            (REMOVE, {"GroupId": missing, "MemberToDel_Account": ["peer"]}),
            (MODIFY, {"GroupId": missing, "Name": "x"}),
            (MEMBERS, {"GroupId": missing}),
            (SEND_GROUP, {"GroupId": missing, "Random": 1, "MsgBody": text("hi")}),
            (GROUP_HISTORY, {"GroupId": missing, "ReqMsgNumber": 5}),
        ):
            refused(env, app, v, path, body, 10010)
        with fx.unchanged(env.db_url, app["sdkappid"]):
            infos = v.ok(INFO, {"GroupIdList": [gid, missing]})["GroupInfo"]
        assert [i["ErrorCode"] for i in infos] == [0, 10010]


def test_10015_invalid_group_id_changes_nothing(env: Env) -> None:
    app, v = env.new_app()
    for bad in ("@TGS#mine", "@TGS#", "has space", "tab\there", "line\nbreak"):
        refused(env, app, v, CREATE, {"Type": "Public", "Name": "x", "GroupId": bad}, 10015)
    assert v.ok(APP_GROUPS, {})["TotalCount"] == 0
    v.ok(CREATE, {"Type": "Public", "Name": "x", "GroupId": "@TGS"})  # not the prefix


def test_10019_missing_account_changes_nothing(env: Env) -> None:
    app, v, gid = populated(env)
    refused(env, app, v, CREATE, {"Owner_Account": "ghost", "Type": "Public", "Name": "x"},
            10019)
    refused(env, app, v, CREATE, {"Owner_Account": "owner", "Type": "Public", "Name": "x",
                                  "MemberList": [{"Member_Account": "peer"},
                                                 {"Member_Account": "ghost"}]}, 10019)
    refused(env, app, v, SENDMSG, {"From_Account": "owner", "To_Account": "ghost",
                                   "MsgRandom": 1, "MsgBody": text("hi")}, 10019)
    refused(env, app, v, SENDMSG, {"To_Account": "ghost", "MsgRandom": 1,
                                   "MsgBody": text("hi")}, 10019)
    refused(env, app, v, SENDMSG, {"From_Account": "ghost", "To_Account": "owner",
                                   "MsgRandom": 1, "MsgBody": text("hi")}, 10019)
    refused(env, app, v, SEND_GROUP, {"GroupId": gid, "From_Account": "ghost", "Random": 1,
                                      "MsgBody": text("hi")}, 10019)
    refused(env, app, v, JOINED, {"Member_Account": "ghost"}, 10019)
    # a deleted account is gone too
    v.ok(DELETE, {"DeleteItem": [{"UserID": "peer"}]})
    refused(env, app, v, SENDMSG, {"From_Account": "owner", "To_Account": "peer",
                                   "MsgRandom": 2, "MsgBody": text("hi")}, 10019)


def test_10021_group_id_already_used_changes_nothing(env: Env) -> None:
    app, v = env.new_app()
    v.ok(CREATE, {"Type": "Public", "Name": "first", "GroupId": "taken"})
    for kind in ("Public", "Private", "AVChatRoom"):
        refused(env, app, v, CREATE, {"Type": kind, "Name": "again", "GroupId": "taken"},
                10021)
    assert group_info(v, "taken")["Name"] == "first"
    # IDs are per app: another app may use the same one
    _, other = env.new_app()
    other.ok(CREATE, {"Type": "Public", "Name": "theirs", "GroupId": "taken"})
    assert group_info(v, "taken")["Name"] == "first"


def test_80001_content_filtering_changes_nothing(env: Env) -> None:
    app, v, gid = populated(env, "pro", "--content-filtering")
    env.imcloud("filter", "add", str(app["sdkappid"]), "rambutan")
    for words in ("oh SHIT", "rambutan season", "Fine, then: motherfucker."):
        refused(env, app, v, SEND_GROUP, {"GroupId": gid, "From_Account": "owner",
                                          "Random": 2, "MsgBody": text(words)}, 80001)
        refused(env, app, v, SENDMSG, {"From_Account": "owner", "To_Account": "peer",
                                       "MsgRandom": 2, "MsgBody": text(words)}, 80001)
    assert v.ok(SEND_GROUP, {"GroupId": gid, "Random": 3, "MsgBody": text("ok")})[
        "MsgSeq"] == 2


# ------------------------------------------------------------------ §7 order of checks


def test_checks_run_in_the_order_of_section_7(env: Env) -> None:
    app, v, _ = populated(env)
    key = app["secret_key"]
    someone = pkg_sig(app["sdkappid"], key, "someone")
    stale = pkg_sig(app["sdkappid"], key, expire=-10)
    other, _ = env.new_app()
    with fx.unchanged(env.db_url, app["sdkappid"]):
        cases: list[tuple[int, str, dict[str, Any], bytes]] = [
            # missing sdkappid before everything
            (60012, "nope/nothing", params(v, sdkappid=None, usersig="x"), b"["),
            # unknown app before the sig and the command
            (60006, "nope/nothing", params(v, sdkappid="1999999999", usersig="x"), b"["),
            # 70xxx before 60010, 10003, 10004
            (70003, "nope/nothing", params(v, usersig="garbage"), b"["),
            (70003, CREATE, params(v, identifier="someone", usersig="garbage"), b"["),
            (70001, "nope/nothing", params(v, usersig=stale), b"{}"),
            (70009, CREATE, params(v, usersig=pkg_sig(app["sdkappid"], other["secret_key"])),
             b'{"Name": 5}'),
            (70013, "nope/nothing", params(v, usersig=someone), b"{}"),
            (70014, IMPORT, params(v, usersig=pkg_sig(other["sdkappid"], key)), b"[]"),
            # 60010 before 10003 and 10004
            (60010, "nope/nothing", params(v, identifier="someone", usersig=someone), b"{}"),
            (60010, CREATE, params(v, identifier="someone", usersig=someone), b"not json"),
            (60010, CREATE, params(v, identifier="someone", usersig=someone),
             b'{"Type": "Public", "Name": 123}'),
            # 10003 before 10004
            (10003, "nope/nothing", params(v), b"not json"),
            (10003, "im_open_login_svc/nothing", params(v), b"[1]"),
            # 10004 before the limits: too long a Name and too big a cap on Trial
            (10004, CREATE, params(v), json.dumps(
                {"Type": "Public", "Name": "x" * 31, "MaxMemberCount": 21}).encode()),
            (10004, CREATE, params(v), json.dumps(
                {"Type": "Community", "Name": "x" * 31}).encode()),
            (10004, ADD, params(v), json.dumps(
                {"GroupId": "g" * 49, "MemberList": [{"Member_Account": "peer"}]}).encode()),
        ]
        for code, path, query, content in cases:
            data = custom(v, path, query, content)
            assert data["ErrorCode"] == code, (code, path, query, content, data)

    # the disabled app: 60016 before every 70xxx, 60010, 10003 and 10004
    env.imcloud("app", "disable", str(app["sdkappid"]), "--confirm", app["name"])
    with fx.unchanged(env.db_url, app["sdkappid"]):
        for query, content in (
            (params(v, usersig="garbage"), b"["),
            (params(v, usersig=stale), b"{}"),
            (params(v, usersig=pkg_sig(app["sdkappid"], other["secret_key"])), b"{}"),
            (params(v, identifier="someone", usersig=someone), b"{}"),
        ):
            assert custom(v, "nope/nothing", query, content)["ErrorCode"] == 60016
            assert custom(v, ADD, query, content)["ErrorCode"] == 60016
        # ... but after 60012/60006
        assert custom(v, CREATE, params(v, sdkappid=None))["ErrorCode"] == 60012


# ------------------------------------------------------------------ R5 through the API


def test_R5_grandfathering_after_a_downgrade_to_trial(env: Env) -> None:
    app, v = env.new_app("pro")
    sdkappid = str(app["sdkappid"])
    users = [f"m{i:02}" for i in range(60)]
    import_users(v, ["heavy", *users])
    big = v.ok(CREATE, {"Owner_Account": "m00", "Type": "Public", "Name": "big",
                        "MaxMemberCount": 200,
                        "MemberList": [{"Member_Account": u} for u in users[1:30]]}
               )["GroupId"]
    heavy = [v.ok(CREATE, {"Owner_Account": "heavy", "Type": ["Public", "Private"][i % 2],
                           "Name": f"h{i}"})["GroupId"] for i in range(55)]
    assert v.ok(JOINED, {"Member_Account": "heavy"})["TotalCount"] == 55

    now = env.now()
    next_month = date(now.year + now.month // 12, now.month % 12 + 1, 1)
    env.imcloud("clock", "set", next_month.isoformat())
    shown = env.imcloud("app", "downgrade", sdkappid)
    assert shown["service_version"] == "Trial"
    assert (shown["limits"]["group_members"], shown["limits"]["groups_per_user"]) == (20, 50)

    # the group keeps its cap and its members, and may still fill up to its own cap
    info = group_info(v, big)
    assert (info["MaxMemberNum"], info["MemberNum"]) == (200, 30)
    assert member_ids(v, big) == set(users[:30])
    v.ok(ADD, {"GroupId": big, "MemberList": [{"Member_Account": u} for u in users[30:45]]})
    assert group_info(v, big)["MemberNum"] == 45
    refused(env, app, v, MODIFY, {"GroupId": big, "MaxMemberNum": 201}, 10038)

    # the user keeps all 55 groups, but can't join a 56th
    assert sorted(g["GroupId"] for g in v.ok(JOINED, {"Member_Account": "heavy"})[
        "GroupIdList"]) == sorted(heavy)
    refused(env, app, v, ADD, {"GroupId": big, "MemberList": [{"Member_Account": "heavy"}]},
            10037)
    refused(env, app, v, CREATE, {"Owner_Account": "heavy", "Type": "Public", "Name": "x"},
            10037)
    # ... nor after leaving a few: 52 is still above Trial's 50
    for gid in heavy[:3]:
        v.ok(DESTROY, {"GroupId": gid})
    refused(env, app, v, ADD, {"GroupId": big, "MemberList": [{"Member_Account": "heavy"}]},
            10037)

    # new groups get Trial's cap of 20
    refused(env, app, v, CREATE, {"Type": "Public", "Name": "new", "MaxMemberCount": 21},
            10038)
    new = v.ok(CREATE, {"Type": "Public", "Name": "new"})["GroupId"]
    assert group_info(v, new)["MaxMemberNum"] == 20
    v.ok(ADD, {"GroupId": new, "MemberList": [{"Member_Account": u} for u in users[40:60]]})
    refused(env, app, v, ADD, {"GroupId": new, "MemberList": [{"Member_Account": "m00"}]},
            10014)
    # and the account limit of Trial applies to new accounts: 61 exist, 39 more fit
    import_users(v, [f"late{i}" for i in range(39)])
    refused(env, app, v, IMPORT, {"UserID": "one-too-many"}, 70398)


# ------------------------------------------------------------------ known bugs in src/


def test_10003_any_v4_path_answers_with_an_envelope(bug_env: Env) -> None:
    env = bug_env
    app, v = env.new_app()
    for path in ("nope_svc", "group_open_http_svc", "a/b/c"):
        with fx.unchanged(env.db_url, app["sdkappid"]):
            data = envelope(v.raw(path))
        assert data["ErrorCode"] == 10003, (path, data)


def test_10004_nul_character_in_a_string_field(bug_env: Env) -> None:
    env = bug_env
    app, v = env.new_app()
    for path, body, field in (
        (IMPORT, {"UserID": "a\u0000b"}, "UserID"),
        (CHECK, {"CheckItem": [{"UserID": "\u0000"}]}, "UserID"),
        (CREATE, {"Type": "Public", "Name": "a\u0000b"}, "Name"),
    ):
        with fx.unchanged(env.db_url, app["sdkappid"]):
            data = v(path, body)
        assert data["ErrorCode"] == 10004 and field in data["ErrorInfo"], data


def test_60006_non_ascii_digits_in_sdkappid(bug_env: Env) -> None:
    env = bug_env
    app, v = env.new_app()
    for bad in ("%C2%B2", "%D9%A3", "1%C2%B2"):  # '²', Arabic-Indic '3', '1²'
        with fx.unchanged(env.db_url, app["sdkappid"]):
            data = custom(v, IMPORT, params(v, sdkappid=bad), b'{"UserID": "x"}')
        assert data["ErrorCode"] == 60006, (bad, data)


def test_10004_non_ascii_digits_in_last_msg_key(bug_env: Env) -> None:
    env = bug_env
    app, v = env.new_app()
    import_users(v, ["a", "b"])
    refused(env, app, v, ROAM, {"Operator_Account": "a", "Peer_Account": "b", "MaxCnt": 5,
                                "MinTime": 0, "MaxTime": 10**9, "LastMsgKey": "²_1_1"},
            10004, "LastMsgKey")
