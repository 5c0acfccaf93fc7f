"""Tests with tls-sig-api-v2-made UserSigs calling every §8 command over real HTTP on
127.0.0.1, on SQLite and PostgreSQL.

Every call goes to a real `imcloud serve` process, signed with UserSigs from the
independent `tls-sig-api-v2` package, and its effect is read back through the API
(and, for retention, the database): accounts, groups, members, per-group MsgSeq,
history paging, one-to-one round trips, usage. Also SPEC §8's "be liberal" list,
E4 content filtering and E5 retention through REST.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
import TLSSigAPIv2

from imcloud.api import v4
from imcloud.services import messages
from imcloud.store.db import Database
from imcloud.store.tables import im_c2c_messages, im_group_messages
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

BLOCKED = 80001
GROUP_NOT_FOUND = 10010
ACCOUNT_NOT_FOUND = 10019
FAR_FUTURE = 4_000_000_000


@pytest.fixture(scope="module", params=fx.BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    yield from fx.serve(request)


class Recorder(V4):
    """A V4 client that remembers which commands answered OK."""

    def __init__(self, v: V4):
        super().__init__(v.base, v.sdkappid, v.key)
        self.done: set[str] = set()

    def ok(self, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        data = super().ok(path, body, **kw)
        self.done.add(path)
        return data


def roam(v: V4, a: str, b: str, n: int, key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"Operator_Account": a, "Peer_Account": b, "MaxCnt": n,
                            "MinTime": 0, "MaxTime": FAR_FUTURE}
    if key is not None:
        body["LastMsgKey"] = key
    return v.ok(ROAM, body)


def texts(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["MsgBody"][0]["MsgContent"]["Text"] for m in msgs]


def history(v: V4, gid: str, n: int = 20, seq: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"GroupId": gid, "ReqMsgNumber": n}
    if seq is not None:
        body["ReqMsgSeq"] = seq
    return v.ok(GROUP_HISTORY, body)


def members_of(v: V4, gid: str) -> dict[str, str]:
    return {m["Member_Account"]: m["Role"]
            for m in v.ok(MEMBERS, {"GroupId": gid})["MemberList"]}


def joined(v: V4, user: str) -> list[str]:
    return [g["GroupId"] for g in v.ok(JOINED, {"Member_Account": user})["GroupIdList"]]


# ------------------------------------------------------------------ every command


def test_every_command_over_real_http_with_real_effects(env: Env) -> None:
    app, admin = env.new_app()
    v = Recorder(admin)
    env.clients.append(v)
    # The simulated clock stands still: this test's groups share one creation time, so
    # lists the API orders by time are compared as sets.
    now = env.now()
    epoch = int(now.timestamp())

    # accounts: multiaccount_import, account_import, account_check
    v.ok(MULTI_IMPORT, {"Accounts": ["alice", "bob", "carol", "dave", "erin"]})
    v.ok(IMPORT, {"UserID": "frank", "Nick": "Frank", "FaceUrl": "http://x/f.png"})
    check = v.ok(CHECK, {"CheckItem": [{"UserID": u} for u in ("alice", "frank", "ghost")]})
    assert {r["UserID"]: r["AccountStatus"] for r in check["ResultItem"]} == {
        "alice": "Imported", "frank": "Imported", "ghost": "NotImported"}

    # groups: create (own ID and an automatic one), get_group_info
    a = v.ok(CREATE, {"Owner_Account": "alice", "Type": "Public", "GroupId": "team-a",
                      "Name": "team", "MemberList": [{"Member_Account": "bob"}]})["GroupId"]
    assert a == "team-a"
    b = v.ok(CREATE, {"Owner_Account": "alice", "Type": "Private", "Name": "b"})["GroupId"]
    assert b.startswith("@TGS#")
    c = v.ok(CREATE, {"Type": "ChatRoom", "Name": "c", "MaxMemberCount": 5})["GroupId"]
    info = v.ok(INFO, {"GroupIdList": [a]})["GroupInfo"][0]
    assert (info["ErrorCode"], info["Type"], info["Name"], info["Owner_Account"],
            info["MemberNum"], info["MaxMemberNum"], info["CreateTime"]) == (
        0, "Public", "team", "alice", 2, 20, epoch)
    assert v.ok(INFO, {"GroupIdList": [c]})["GroupInfo"][0]["MaxMemberNum"] == 5

    # add_group_member: added 1, missing account 0, already a member 2
    added = v.ok(ADD, {"GroupId": a, "MemberList": [
        {"Member_Account": u} for u in ("carol", "dave", "ghost", "bob")]})["MemberList"]
    assert {m["Member_Account"]: m["Result"] for m in added} == {
        "carol": 1, "dave": 1, "ghost": 0, "bob": 2}
    assert members_of(v, a) == {"alice": "Owner", "bob": "Member", "carol": "Member",
                                "dave": "Member"}
    assert v.ok(INFO, {"GroupIdList": [a]})["GroupInfo"][0]["MemberNum"] == 4
    page = v.ok(MEMBERS, {"GroupId": a, "Limit": 2, "Offset": 1})
    assert page["MemberNum"] == 4 and len(page["MemberList"]) == 2

    # delete_group_member
    v.ok(REMOVE, {"GroupId": a, "MemberToDel_Account": ["dave"]})
    assert set(members_of(v, a)) == {"alice", "bob", "carol"}
    assert v.ok(INFO, {"GroupIdList": [a]})["GroupInfo"][0]["MemberNum"] == 3

    # modify_group_base_info
    v.ok(MODIFY, {"GroupId": a, "Name": "renamed", "Introduction": "hi", "MaxMemberNum": 15})
    info = v.ok(INFO, {"GroupIdList": [a]})["GroupInfo"][0]
    assert (info["Name"], info["Introduction"], info["MaxMemberNum"]) == ("renamed", "hi", 15)

    # send_group_msg: MsgSeq 1, 2, 3 per group
    seqs = [v.ok(SEND_GROUP, {"GroupId": a, "From_Account": "bob", "Random": i,
                              "MsgBody": text(f"a{i}")})["MsgSeq"] for i in (1, 2, 3)]
    assert seqs == [1, 2, 3]
    reply = v.ok(SEND_GROUP, {"GroupId": b, "Random": 9, "MsgBody": text("b1")})
    assert (reply["MsgSeq"], reply["MsgTime"]) == (1, epoch)
    assert v.ok(SEND_GROUP, {"GroupId": a, "Random": 4, "MsgBody": text("a4")})["MsgSeq"] == 4
    assert v.ok(INFO, {"GroupIdList": [a]})["GroupInfo"][0]["NextMsgSeq"] == 5

    # group_msg_get_simple: newest first, ReqMsgSeq paging, IsFinished
    first = history(v, a, 3)
    assert [m["MsgSeq"] for m in first["RspMsgList"]] == [4, 3, 2]
    assert texts(first["RspMsgList"]) == ["a4", "a3", "a2"]
    assert first["IsFinished"] == 0 and first["GroupId"] == a
    assert first["RspMsgList"][1]["From_Account"] == "bob"
    assert first["RspMsgList"][1]["MsgRandom"] == 3
    assert first["RspMsgList"][0]["From_Account"] == "administrator"
    rest = history(v, a, 3, seq=first["RspMsgList"][-1]["MsgSeq"] - 1)
    assert [m["MsgSeq"] for m in rest["RspMsgList"]] == [1] and rest["IsFinished"] == 1
    assert [m["MsgSeq"] for m in history(v, b)["RspMsgList"]] == [1]

    # sendmsg + admin_getroammsg, paged by LastMsgKey
    keys = [v.ok(SENDMSG, {"From_Account": "alice" if i % 2 else "bob",
                           "To_Account": "bob" if i % 2 else "alice", "MsgRandom": i,
                           "MsgBody": text(f"c{i}")})["MsgKey"] for i in range(1, 6)]
    assert len(set(keys)) == 5
    v.ok(SENDMSG, {"From_Account": "alice", "To_Account": "carol", "MsgRandom": 7,
                   "MsgBody": text("not between alice and bob")})
    got: list[str] = []
    key = None
    pages = []
    while True:
        page = roam(v, "alice", "bob", 2, key)
        got += texts(page["MsgList"])
        pages.append((page["MsgCnt"], page["Complete"]))
        if page["Complete"]:
            break
        key = page["LastMsgKey"]
        assert key == page["MsgList"][-1]["MsgKey"]
    assert got == ["c5", "c4", "c3", "c2", "c1"]
    assert pages == [(2, 0), (2, 0), (1, 1)]
    one = roam(v, "bob", "alice", 1)["MsgList"][0]
    assert (one["From_Account"], one["To_Account"], one["MsgKey"], one["MsgTimeStamp"]) == (
        "alice", "bob", keys[-1], epoch)

    # get_joined_group_list, get_appid_group_list with Limit/Next
    assert sorted(joined(v, "alice")) == sorted([a, b])
    assert joined(v, "carol") == [a]
    listed: list[str] = []
    nxt = 0
    for _ in range(10):
        page = v.ok(APP_GROUPS, {"Limit": 2, "Next": nxt})
        assert page["TotalCount"] == 3
        listed += [g["GroupId"] for g in page["GroupIdList"]]
        nxt = page["Next"]
        if nxt == 0:
            break
    assert len(listed) == 3 and set(listed) == {a, b, c}

    # getappinfo: today's group count, on the simulated clock's day
    today = v.ok(APPINFO, {})["Result"][0]
    assert today["Date"] == now.strftime("%Y%m%d")
    assert (today["GroupNum"], today["AppId"]) == ("3", str(app["sdkappid"]))

    # destroy_group: gone for get_group_info (10010), lists, membership
    v.ok(DESTROY, {"GroupId": b})
    infos = v.ok(INFO, {"GroupIdList": [a, b]})["GroupInfo"]
    assert [(i["GroupId"], i["ErrorCode"]) for i in infos] == [(a, 0), (b, GROUP_NOT_FOUND)]
    assert sorted(g["GroupId"] for g in v.ok(APP_GROUPS, {})["GroupIdList"]) == sorted([a, c])
    assert joined(v, "alice") == [a]
    v.fail(GROUP_HISTORY, {"GroupId": b, "ReqMsgNumber": 5}, GROUP_NOT_FOUND)

    # account_delete: the account and its memberships go
    deleted = v.ok(DELETE, {"DeleteItem": [{"UserID": "bob"}]})
    assert deleted["ResultItem"][0]["UserID"] == "bob"
    assert set(members_of(v, a)) == {"alice", "carol"}
    assert v.ok(INFO, {"GroupIdList": [a]})["GroupInfo"][0]["MemberNum"] == 2
    check = v.ok(CHECK, {"CheckItem": [{"UserID": "bob"}]})
    assert check["ResultItem"][0]["AccountStatus"] == "NotImported"
    v.fail(JOINED, {"Member_Account": "bob"}, ACCOUNT_NOT_FOUND)

    # every command of §8 was called, and answered OK
    assert v.done == {f"{s}/{n}" for s, n in v4.COMMANDS}


# ------------------------------------------------------------------ be liberal (§8)


def test_liberal_requests_are_accepted(env: Env) -> None:
    app, v = env.new_app()
    http = v.http

    # no Content-Type header at all
    r = http.post(v.url(MULTI_IMPORT), content=b'{"Accounts": ["u1", "u2"]}')
    assert "content-type" not in r.request.headers
    assert (r.status_code, r.json()["ErrorCode"]) == (200, 0), r.text
    # and the wrong one, as form-posting clients send
    r = http.post(v.url(IMPORT), content=b'{"UserID": "u3"}',
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.json()["ErrorCode"] == 0, r.text

    # `Identifier` instead of `UserID` (older clients)
    v.ok(IMPORT, {"Identifier": "old-style", "Nick": "Old"})
    check = v.ok(CHECK, {"CheckItem": [{"Identifier": "old-style"}, {"UserID": "u3"}]})
    assert [i["AccountStatus"] for i in check["ResultItem"]] == ["Imported", "Imported"]

    # GET with a JSON body, for a read-only command
    r = http.request("GET", v.url(CHECK),
                     content=b'{"CheckItem": [{"UserID": "u1"}, {"UserID": "nope"}]}')
    assert r.status_code == 200, r.text
    assert [i["AccountStatus"] for i in r.json()["ResultItem"]] == ["Imported", "NotImported"]
    gid = v.ok(CREATE, {"Owner_Account": "u1", "Type": "Public", "Name": "g"})["GroupId"]
    r = http.request("GET", v.url(INFO), content=f'{{"GroupIdList": ["{gid}"]}}'.encode())
    assert r.json()["GroupInfo"][0]["Owner_Account"] == "u1", r.text

    # a UserSig whose `*` are percent-encoded (%2A), and one entirely percent-encoded
    api = TLSSigAPIv2.TLSSigAPIv2(app["sdkappid"], app["secret_key"])
    sig = next(s for s in (str(api.gen_sig("administrator", 3600 + i)) for i in range(200))
               if "*" in s)
    for encoded in (sig.replace("*", "%2A"), quote(sig, safe="")):
        assert "%2A" in encoded
        url = (f"{v.base}/v4/{CHECK}?sdkappid={app['sdkappid']}&identifier=administrator"
               f"&usersig={encoded}&random={random.randint(0, 2**32 - 1)}&contenttype=json")
        r = http.post(url, content=b'{"CheckItem": [{"UserID": "u2"}]}')
        assert r.json()["ResultItem"][0]["AccountStatus"] == "Imported", r.text

    # the admin UserSig regenerated per request: every fresh one works, old ones too
    sigs = [str(api.gen_sig("administrator", 600 + i)) for i in range(5)]
    assert len(set(sigs)) == 5
    for i, s in enumerate([*sigs, *reversed(sigs)]):
        v.ok(IMPORT, {"UserID": f"fresh{i}"}, usersig=s)
    assert v.ok(CHECK, {"CheckItem": [{"UserID": f"fresh{i}"} for i in range(10)]})[
        "ResultItem"][9]["AccountStatus"] == "Imported"
    # and our own generator's sigs equal the package's (same layout, same bytes)
    from imcloud.im import usersig

    doc = usersig.peek(sigs[0])
    assert usersig.generate(app["sdkappid"], app["secret_key"], "administrator", 600,
                            now=int(str(doc["TLS.time"]))) == sigs[0]


# ------------------------------------------------------------------ E4 through REST


def test_E4_content_filtering_refuses_and_stores_nothing(env: Env) -> None:
    app, v = env.new_app("pro", "--content-filtering")
    sdkappid = str(app["sdkappid"])
    v.ok(MULTI_IMPORT, {"Accounts": ["ann", "ben"]})
    gid = v.ok(CREATE, {"Owner_Account": "ann", "Type": "Public", "Name": "f",
                        "MemberList": [{"Member_Account": "ben"}]})["GroupId"]
    v.ok(SEND_GROUP, {"GroupId": gid, "From_Account": "ann", "Random": 1,
                      "MsgBody": text("hello")})
    v.ok(SENDMSG, {"From_Account": "ann", "To_Account": "ben", "MsgRandom": 1,
                   "MsgBody": text("hello")})
    assert env.imcloud("filter", "add", sdkappid, "Durian")["words"] == ["durian"]

    builtin = "what a load of BullShit"  # built-in list, any case, inside a word
    custom = "I brought durians"  # the operator's word
    second_elem = [*text("fine"), {"MsgType": "TIMFaceElem", "MsgContent": {"Index": 1}},
                   *text("but this is shit")]
    bad_bodies = [text(builtin), text(custom), second_elem]

    def group_state() -> tuple[Any, ...]:
        h = history(v, gid)
        return ([m["MsgSeq"] for m in h["RspMsgList"]],
                v.ok(INFO, {"GroupIdList": [gid]})["GroupInfo"][0]["NextMsgSeq"],
                roam(v, "ann", "ben", 100)["MsgCnt"])

    before = group_state()
    assert before == ([1], 2, 1)
    with fx.unchanged(env.db_url, app["sdkappid"]):
        for body in bad_bodies:
            v.fail(SEND_GROUP, {"GroupId": gid, "From_Account": "ann", "Random": 2,
                                "MsgBody": body}, BLOCKED)
            v.fail(SEND_GROUP, {"GroupId": gid, "Random": 2, "MsgBody": body}, BLOCKED)
            v.fail(SENDMSG, {"From_Account": "ann", "To_Account": "ben", "MsgRandom": 2,
                             "MsgBody": body}, BLOCKED)
            v.fail(SENDMSG, {"To_Account": "ben", "MsgRandom": 2, "MsgBody": body}, BLOCKED)
    assert group_state() == before
    # only text elements are checked
    custom_elem = [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": "shit durian"}}]
    assert v.ok(SEND_GROUP, {"GroupId": gid, "Random": 3, "MsgBody": custom_elem})[
        "MsgSeq"] == 2

    # with the item off, the same messages are accepted and stored
    shown = env.imcloud("app", "configure", sdkappid, "--content-filtering", "off")
    assert shown["items"]["content_filtering"] is False
    for i, body in enumerate(bad_bodies):
        assert v.ok(SEND_GROUP, {"GroupId": gid, "From_Account": "ann", "Random": 10 + i,
                                 "MsgBody": body})["MsgSeq"] == 3 + i
        v.ok(SENDMSG, {"From_Account": "ann", "To_Account": "ben", "MsgRandom": 10 + i,
                       "MsgBody": body})
    assert [m["MsgSeq"] for m in history(v, gid)["RspMsgList"]] == [5, 4, 3, 2, 1]
    assert texts(roam(v, "ann", "ben", 100)["MsgList"])[1:3] == [custom, builtin]

    # and on again: refused again, with the operator's word still on the list
    env.imcloud("app", "configure", sdkappid, "--content-filtering", "on")
    with fx.unchanged(env.db_url, app["sdkappid"]):
        v.fail(SEND_GROUP, {"GroupId": gid, "Random": 20, "MsgBody": text(custom)}, BLOCKED)
        v.fail(SENDMSG, {"To_Account": "ben", "MsgRandom": 20, "MsgBody": text(custom)},
               BLOCKED)


# ------------------------------------------------------------------ E5 through REST


async def _count(db_url: str, sdkappid: int) -> tuple[int, int]:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            counts = []
            for t in (im_group_messages, im_c2c_messages):
                counts.append(int(await conn.scalar(
                    sa.select(sa.func.count()).select_from(t)
                    .where(t.c.sdkappid == sdkappid)) or 0))
            return counts[0], counts[1]
    finally:
        await db.dispose()


async def _purge(db_url: str, now: datetime) -> int:
    db = Database(db_url)
    try:
        return await messages.purge_expired(db, now)
    finally:
        await db.dispose()


def test_E5_retention_hides_then_purges_messages_older_than_history_days(env: Env) -> None:
    app, v = env.new_app()  # Trial: 7 days
    assert app["items"]["history_days"] == 7
    v.ok(MULTI_IMPORT, {"Accounts": ["p", "q"]})
    gid = v.ok(CREATE, {"Owner_Account": "p", "Type": "Public", "Name": "r",
                        "MemberList": [{"Member_Account": "q"}]})["GroupId"]
    t0 = env.now()

    def send(label: str) -> None:
        v.ok(SEND_GROUP, {"GroupId": gid, "Random": 1, "MsgBody": text(label)})
        v.ok(SENDMSG, {"From_Account": "p", "To_Account": "q", "MsgRandom": 1,
                       "MsgBody": text(label)})

    def visible() -> tuple[list[str], list[str]]:
        return (texts(history(v, gid)["RspMsgList"]),
                texts(roam(v, "p", "q", 100)["MsgList"]))

    send("day0-a")
    send("day0-b")
    env.imcloud("clock", "set", (t0 + timedelta(days=3)).isoformat())
    send("day3")
    assert visible() == (["day3", "day0-b", "day0-a"], ["day3", "day0-b", "day0-a"])

    # exactly 7 days later: still kept
    env.imcloud("clock", "set", (t0 + timedelta(days=7)).isoformat())
    assert visible() == (["day3", "day0-b", "day0-a"], ["day3", "day0-b", "day0-a"])
    # a second later, the day-0 messages are past retention: not returned any more
    later = t0 + timedelta(days=7, seconds=1)
    env.imcloud("clock", "set", later.isoformat())
    assert visible() == (["day3"], ["day3"])
    assert history(v, gid)["IsFinished"] == 1
    # MsgSeq keeps counting; the group's numbering is unaffected by retention
    assert v.ok(SEND_GROUP, {"GroupId": gid, "Random": 2, "MsgBody": text("new")})[
        "MsgSeq"] == 4

    # and purge_expired deletes them from the database
    assert run(_count(env.db_url, app["sdkappid"])) == (4, 3)
    assert run(_purge(env.db_url, later.astimezone(UTC))) >= 4
    assert run(_count(env.db_url, app["sdkappid"])) == (2, 1)
    assert visible() == (["new", "day3"], ["day3"])
    run(_purge(env.db_url, later))  # idempotent
    assert run(_count(env.db_url, app["sdkappid"])) == (2, 1)
