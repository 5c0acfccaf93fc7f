"""A hypothesis fuzzer for every v4 command (`v4.COMMANDS`): random and mutated bodies
and queries over real HTTP to a real `imcloud serve`, on SQLite and PostgreSQL.

Bodies: a valid body with keys dropped, added, duplicated or given values of the wrong
type (huge and negative integers, huge and NUL-carrying strings, deep nesting), random
JSON, and bytes that are not JSON at all (invalid UTF-8, truncated, `NaN`, deep
brackets, a BOM, over the 1 MiB cap). Queries: sdkappid missing, empty, not a number,
too long, duplicated or another app's; identifier and usersig missing, duplicated, a
user's, another app's, expired, tampered, garbage. Methods besides POST, and odd
content types.

What must hold: every reply is HTTP 200 JSON with a consistent ActionStatus /
ErrorCode / ErrorInfo envelope (HEAD: 200 without a body), never 10002 (the envelope of
an unexpected exception); a refused request changes none of the app's rows; valid
calls interleaved with the garbage still succeed (ErrorCode 0); and afterwards the
server process is alive, answers and has logged no error. 60007 and 10023 (rate
limits) are refusals like any other; a valid call refused by one is retried.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imcloud.api import v4
from imcloud.im import usersig
from tests import fuzzcount
from tests.conftest import FUZZ_EXAMPLES
from tests.integration import v4_fixtures as fx
from tests.integration.v4_fixtures import Env, text

ADMIN = "administrator"
RATE_LIMITED = {60007, 10023}
METHODS = ["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/json; charset=latin-1",
    "*/*",
    "garbage",
]
COMMAND_IDS = [f"{s}/{n}" for s, n in v4.COMMANDS]


@dataclass
class Target:
    """The fuzzed app (Flagship: no account or group caps get in the way), its rows for
    valid calls (u1, u2, group `gid`), and another app whose credentials are wrong here."""

    env: Env
    sdkappid: int
    key: str
    gid: str
    other_appid: int
    other_key: str
    fuzz_gid: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60))
    n: Iterator[int] = field(default_factory=itertools.count)

    def sig(
        self,
        who: str = ADMIN,
        *,
        key: str | None = None,
        appid: int | None = None,
        expire: int = 3600,
        now: int | None = None,
    ) -> str:
        return usersig.generate(appid or self.sdkappid, key or self.key, who, expire, now)

    def query(self) -> list[tuple[str, str]]:
        return [
            ("sdkappid", str(self.sdkappid)),
            ("identifier", ADMIN),
            ("usersig", self.sig()),
            ("random", "7"),
            ("contenttype", "json"),
        ]

    def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: bytes,
        content_type: str | None,
    ) -> httpx.Response:
        url = f"{self.env.base}/v4/{path}?" + "&".join(f"{k}={v}" for k, v in query)
        headers = {"content-type": content_type} if content_type else {}
        return self.http.request(method, url, content=body, headers=headers)

    def valid(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A valid admin call: ErrorCode 0 (a rate-limit refusal is waited out)."""
        for _ in range(10):
            q = [(k, quote(v, safe="")) for k, v in self.query()]
            data = envelope(self.send("POST", path, q, orjson.dumps(body), None), "POST")
            if data["ErrorCode"] not in RATE_LIMITED:
                break
            time.sleep(1.0)
        assert data["ErrorCode"] == 0, (path, body, data)
        fuzzcount.record("valid-ok")
        return data


def envelope(r: httpx.Response, method: str) -> dict[str, Any]:
    """Assert the reply is a v4 envelope; count and fail anything else."""
    if r.status_code >= 500:
        fuzzcount.record("5xx")
    if method == "HEAD":
        assert r.status_code == 200, r.status_code
        return {"ErrorCode": None}
    try:
        assert r.status_code == 200, r.status_code
        assert r.headers["content-type"].startswith("application/json"), r.headers
        data = r.json()
        assert isinstance(data, dict), data
        assert isinstance(data["ErrorCode"], int) and isinstance(data["ErrorInfo"], str), data
        assert data["ActionStatus"] == ("OK" if data["ErrorCode"] == 0 else "FAIL"), data
    except (AssertionError, KeyError, ValueError):
        fuzzcount.record("non-envelope")
        raise AssertionError(f"not an envelope: {r.status_code} {r.text[:300]!r}") from None
    assert data["ErrorCode"] != 10002, data  # an unexpected exception, caught
    return data


@pytest.fixture(scope="module", params=fx.BACKENDS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    for env in fx.serve(request):
        app, admin = env.new_app("flagship")
        other, _ = env.new_app()
        admin.ok(fx.MULTI_IMPORT, {"Accounts": ["u1", "u2", "u3", "u4", "f1", "f2", "f6", "f7"]})
        gid = admin.ok(
            fx.CREATE,
            {
                "Owner_Account": "u1",
                "Type": "Public",
                "Name": "g",
                "MemberList": [{"Member_Account": "u2"}],
            },
        )["GroupId"]
        t = Target(
            env, app["sdkappid"], app["secret_key"], gid, other["sdkappid"], other["secret_key"]
        )
        yield t
        t.http.close()


# ------------------------------------------------------------------ valid calls


def valid_call(t: Target, path: str) -> None:
    """A call of `path` that must succeed, on rows the fuzzed bodies never name."""
    n = next(t.n)
    if path == fx.DESTROY:
        gid = t.valid(fx.CREATE, {"Type": "Public", "Name": "doomed"})["GroupId"]
        t.valid(path, {"GroupId": gid})
    elif path == fx.DELETE:
        t.valid(fx.IMPORT, {"UserID": f"gone{n}"})
        t.valid(path, {"DeleteItem": [{"UserID": f"gone{n}"}]})
    elif path == fx.REMOVE:
        t.valid(fx.ADD, {"GroupId": t.gid, "MemberList": [{"Member_Account": "u4"}]})
        t.valid(path, {"GroupId": t.gid, "MemberToDel_Account": ["u4"]})
    else:
        t.valid(
            path,
            {
                fx.IMPORT: {"UserID": f"v{n}"},
                fx.MULTI_IMPORT: {"Accounts": [f"m{n}a", f"m{n}b"]},
                fx.CHECK: {"CheckItem": [{"UserID": "u1"}]},
                fx.CREATE: {"Type": "Public", "Name": f"ok{n}"},  # no one's group count grows
                fx.INFO: {"GroupIdList": [t.gid]},
                fx.MODIFY: {"GroupId": t.gid, "Introduction": f"intro {n}"},
                fx.ADD: {"GroupId": t.gid, "MemberList": [{"Member_Account": "u3"}]},
                fx.MEMBERS: {"GroupId": t.gid},
                fx.JOINED: {"Member_Account": "u1"},
                fx.APP_GROUPS: {"Limit": 10},
                fx.SEND_GROUP: {
                    "GroupId": t.gid,
                    "Random": n,
                    "From_Account": "u1",
                    "MsgBody": text(f"valid {n}"),
                },
                fx.GROUP_HISTORY: {"GroupId": t.gid, "ReqMsgNumber": 5},
                fx.SENDMSG: {
                    "From_Account": "u1",
                    "To_Account": "u2",
                    "MsgRandom": n,
                    "MsgBody": text(f"valid {n}"),
                },
                fx.ROAM: {
                    "Operator_Account": "u1",
                    "Peer_Account": "u2",
                    "MaxCnt": 5,
                    "MinTime": 0,
                    "MaxTime": 4_294_967_295,
                },
                fx.APPINFO: {},
            }[path],
        )


def read_back(t: Target, path: str, reply: dict[str, Any]) -> None:
    """What a fuzzed body stored reads back (a stored value no reply can encode would
    break every later read of it)."""
    if path == fx.SEND_GROUP:
        t.valid(fx.GROUP_HISTORY, {"GroupId": t.fuzz_gid, "ReqMsgNumber": 20})
    elif path == fx.SENDMSG:
        t.valid(
            fx.ROAM,
            {
                "Operator_Account": "f1",
                "Peer_Account": "f2",
                "MaxCnt": 100,
                "MinTime": 0,
                "MaxTime": 4_294_967_295,
            },
        )
    elif path == fx.CREATE:
        t.valid(fx.INFO, {"GroupIdList": [reply["GroupId"]]})
    elif path == fx.MODIFY:
        t.valid(fx.INFO, {"GroupIdList": [t.fuzz_gid]})


# ------------------------------------------------------------------ bodies


def templates(fuzz_gid: str) -> dict[str, dict[str, Any]]:
    """A valid body per command, naming only the fuzz rows (f1…f7, `fuzz_gid`)."""
    msg = [
        {"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}},
        {"MsgType": "TIMCustomElem", "MsgContent": {"Data": "d", "Desc": "x", "Ext": ""}},
    ]
    bodies = {
        fx.IMPORT: {"UserID": "f3", "Nick": "n", "FaceUrl": "http://x/y.png"},
        fx.MULTI_IMPORT: {"Accounts": ["f4", "f5"]},
        fx.CHECK: {"CheckItem": [{"UserID": "f1"}, {"Identifier": "f2"}]},
        fx.DELETE: {"DeleteItem": [{"UserID": "f5"}]},
        fx.CREATE: {
            "Owner_Account": "f6",  # not f1/f2: their group counts stay low
            "Type": "Private",
            "Name": "fz",
            "Introduction": "i",
            "Notification": "n",
            "FaceUrl": "u",
            "MaxMemberCount": 50,
            "ApplyJoinOption": "FreeAccess",
            "MemberList": [{"Member_Account": "f7", "Role": "Admin"}],
        },
        fx.DESTROY: {"GroupId": fuzz_gid},
        fx.INFO: {"GroupIdList": [fuzz_gid]},
        fx.MODIFY: {
            "GroupId": fuzz_gid,
            "Name": "n",
            "Introduction": "i",
            "Notification": "o",
            "FaceUrl": "f",
            "MaxMemberNum": 30,
            "ApplyJoinOption": "NeedPermission",
        },
        fx.ADD: {"GroupId": fuzz_gid, "Silence": 1, "MemberList": [{"Member_Account": "f2"}]},
        fx.REMOVE: {
            "GroupId": fuzz_gid,
            "Silence": 0,
            "Reason": "r",
            "MemberToDel_Account": ["f2"],
        },
        fx.MEMBERS: {"GroupId": fuzz_gid, "Limit": 10, "Offset": 0},
        fx.JOINED: {"Member_Account": "f1", "Limit": 5, "Offset": 0, "GroupType": "Public"},
        fx.APP_GROUPS: {"Limit": 5, "Next": 0, "GroupType": "Private"},
        fx.SEND_GROUP: {"GroupId": fuzz_gid, "Random": 1, "From_Account": "f1", "MsgBody": msg},
        fx.GROUP_HISTORY: {"GroupId": fuzz_gid, "ReqMsgNumber": 3, "ReqMsgSeq": 1},
        fx.SENDMSG: {
            "SyncOtherMachine": 2,
            "From_Account": "f1",
            "To_Account": "f2",
            "MsgRandom": 1,
            "MsgBody": msg,
            "MsgLifeTime": 60,
        },
        fx.ROAM: {
            "Operator_Account": "f1",
            "Peer_Account": "f2",
            "MaxCnt": 3,
            "MinTime": 0,
            "MaxTime": 4_294_967_295,
            "LastMsgKey": "1_1_1",
        },
        fx.APPINFO: {"RequestField": ["ActiveUserNum", "GroupNum"]},
    }
    assert set(bodies) == set(COMMAND_IDS)  # a new command needs a template here
    return bodies


def nested(depth: int, leaf: Any = 1) -> Any:
    v = leaf
    for i in range(depth):
        v = [v] if i % 2 else {"a": v}
    return v


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)

WEIRD_VALUES = st.one_of(
    JSON,
    st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
    st.integers(min_value=-(2**64), max_value=-1),
    st.sampled_from(
        [
            0,
            -1,
            2**31,
            2**32,
            2**63,
            10**30,
            1.5,
            -0.0,
            1e308,
            True,
            False,
            None,
            "",
            " ",
            "0",
            "-1",
            "1e3",
            "null",
            "\x00",
            "a\x00b",
            "\u202e",
            "😀" * 20,
            "@TGS#",
            "%00",
            "' OR 1=1 --",
            "../../etc/passwd",
            [],
            {},
            [[]],
            {"": {}},
        ]
    ),
    st.builds(lambda n, c: c * n, st.integers(31, 3000), st.sampled_from("a€😀\x00 ")),
    st.integers(min_value=20, max_value=400).map(nested),
    st.text(max_size=40),
)
WEIRD = WEIRD_VALUES.map(copy.deepcopy)  # the constants above are mutated in place later


def _containers(v: Any) -> Iterator[Any]:
    if isinstance(v, (dict, list)):
        yield v
        for c in v.values() if isinstance(v, dict) else v:
            yield from _containers(c)


# Values at the edges of what a field of the template's type can hold: integers around
# the 32- and 64-bit limits (a JSON number below 2**64 parses as an integer), strings
# that are long, hold NUL or look like numbers, objects nested past any encoder's limit.
EDGE_INTS = [
    2**63,
    2**63 + 1,
    2**64 - 1,
    2**63 - 1,
    -(2**63) - 1,
    -1,
    2**31,
    2**32,
    0,
    10**30,
    1.5,
    "1",
    None,
    True,
]
EDGE_STRS = [
    "",
    " ",
    "\x00",
    "a\x00",
    "9" * 30,
    "9" * 30 + "_1",
    "18446744073709551615_1",
    "-1_1",
    "\ud7ff\ue000",
    "😀" * 40,
    "a" * 5000,
    "%s",
    "\\",
    "\u202e",
    1,
    [],
    None,
]


def edge(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool) or not isinstance(value, (int, str, dict, list)):
        return WEIRD
    if isinstance(value, int):
        return st.sampled_from(EDGE_INTS) | st.integers(2**63, 2**64 - 1) | WEIRD
    if isinstance(value, str):
        return st.sampled_from(EDGE_STRS) | WEIRD
    if isinstance(value, dict):
        return st.integers(200, 400).map(lambda d: {"Data": nested(d)}) | WEIRD
    return (
        st.sampled_from([[], [None], [value[0]] * 1000 if value else [[]]]).map(copy.deepcopy)
        | WEIRD
    )


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    """The template with a few changes, each somewhere in its tree."""
    body: Any = json.loads(json.dumps(template))
    for _ in range(draw(st.integers(1, 3))):
        containers = list(_containers(body))
        if not containers:
            return draw(WEIRD)
        slots = [
            (c, k) for c in containers for k in (list(c) if isinstance(c, dict) else range(len(c)))
        ]
        op = draw(st.sampled_from(["edge", "edge", "edge", "drop", "replace", "add", "wrap"]))
        if op == "add" or not slots:
            where = draw(st.sampled_from(containers))
            if isinstance(where, dict):
                where[draw(st.text(max_size=12))] = draw(WEIRD)
            else:
                where.append(draw(WEIRD))
            continue
        where, k = draw(st.sampled_from(slots))  # every field equally likely
        if op == "drop":
            del where[k]
        elif op == "edge":
            where[k] = draw(edge(where[k]))
        elif op == "replace":
            where[k] = draw(WEIRD)
        else:
            where[k] = [where[k]]
    return body


def encode(value: Any) -> bytes:
    """JSON bytes of a generated value (json where orjson refuses: ints past 64 bits,
    nesting past 255)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


RAW = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"true",
            b"1",
            b'"s"',
            b"{",
            b"}",
            b"{}}",
            b'{"a":NaN}',
            b'{"a":Infinity}',
            b'{"a":1e400}',
            b"{'a': 1}",
            b'{"a":1,}',
            b"/* c */ {}",
            b'{"\\ud800": 1}',
            b'{"a":"\\ud800"}',
            b"\xef\xbb\xbf{}",
            b"\x00",
            b"\xff\xfe{\x00}\x00",
            b"not json",
            b'{"a":' + b"9" * 5000 + b"}",
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 3000 + b"1" + b"}" * 3000,
        ]
    ),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@st.composite
def bodies(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    kind = draw(
        st.sampled_from(
            ["mutated"] * 8
            + ["duplicate", "invalid-utf8", "truncated", "random-json", "raw", "huge"]
        )
    )
    if kind == "mutated":
        return encode(draw(mutated(template)))
    good = orjson.dumps(template)
    if kind == "duplicate":  # the same key twice: which one counts must not matter
        k = draw(st.sampled_from(sorted(template))) if template else "x"
        return (
            good[:-1]
            + (b"," if template else b"")
            + orjson.dumps(k)
            + b":"
            + encode(draw(WEIRD))
            + b"}"
        )
    if kind == "invalid-utf8":
        at = draw(st.integers(0, len(good)))
        bad = draw(
            st.sampled_from(
                [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80", b"\x80", b"\xe2\x82"]
            )
        )
        return good[:at] + bad + good[at:]
    if kind == "truncated":
        return good[: draw(st.integers(0, max(0, len(good) - 1)))]
    if kind == "random-json":
        return encode(draw(JSON))
    if kind == "huge":  # past the 1 MiB cap, or a huge string inside it
        size = draw(st.sampled_from([(1 << 20) + 1, 200_000]))
        return b'{"UserID":"' + b"a" * size + b'"}'
    return draw(RAW)


# ------------------------------------------------------------------ queries


@st.composite
def queries(draw: st.DrawFn, t: Target) -> list[tuple[str, str]]:
    q = [(k, quote(v, safe="")) for k, v in t.query()]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["sdkappid", "identifier", "usersig", "random", "other"]))
        i = next((j for j, (k, _) in enumerate(q) if k == name), None)
        choice = draw(st.sampled_from(["drop", "empty", "duplicate", "value"]))
        if choice == "drop" and i is not None:
            q.pop(i)
            continue
        if choice == "empty" and i is not None:
            q[i] = (name, "")
            continue
        value = draw(
            st.one_of(
                st.sampled_from(
                    {
                        "sdkappid": [
                            str(t.other_appid),
                            "-1",
                            "0",
                            "abc",
                            "1e9",
                            "9" * 13,
                            "9" * 40,
                            "%D9%A1%D9%A2",
                            "+1",
                            "%201",
                            "1.0",
                            str(t.sdkappid + 1),
                        ],
                        "identifier": [
                            "u1",
                            "nobody",
                            "%00",
                            "a" * 200,
                            "Administrator",
                            "%FF",
                            "administrator%20",
                        ],
                        "usersig": [
                            quote(t.sig("u1"), safe=""),
                            quote(t.sig(key=t.other_key), safe=""),
                            quote(t.sig(appid=t.other_appid, key=t.other_key), safe=""),
                            quote(t.sig(expire=10, now=int(time.time()) - 3600), safe=""),
                            quote(t.sig(key="0" * 64), safe=""),
                            t.sig()[:-6],
                            t.sig()[::-1],
                            "eJw",
                            "%FF%FE",
                            "A" * 20000,
                            "%2A%2A",
                            quote(t.sig(), safe="").replace("%2A", "*"),
                        ],
                        "random": ["-1", "abc", "9" * 40, ""],
                        "other": ["x", "%00", "%FF"],
                    }[name]
                ),
                st.text(max_size=30).map(lambda s: quote(s, safe="")),
            )
        )
        if choice == "duplicate" or i is None:
            q.insert(draw(st.integers(0, len(q))), (name, value))
        else:
            q[i] = (name, value)
    return draw(st.permutations(q))


# ------------------------------------------------------------------ the tests


def fuzz_group(t: Target) -> str:
    """The group the fuzzed bodies name (f1 owns it; f2 is a member), made again when a
    fuzzed destroy_group got it. Shared by the commands, so what one stores (say, a
    strange message) the next reads (its history)."""
    if t.fuzz_gid:
        info = t.valid(fx.INFO, {"GroupIdList": [t.fuzz_gid]})["GroupInfo"][0]
        if info["ErrorCode"] == 0:
            return t.fuzz_gid
    t.fuzz_gid = str(
        t.valid(
            fx.CREATE,
            {
                "Owner_Account": "f1",
                "Type": "Public",
                "Name": "fuzz",
                "MemberList": [{"Member_Account": "f2"}],
            },
        )["GroupId"]
    )
    return t.fuzz_gid


@pytest.mark.parametrize("path", COMMAND_IDS)
def test_garbage_to_every_v4_command_gets_an_envelope_and_changes_nothing(
    target: Target, path: str
) -> None:
    t = target
    gid = fuzz_group(t)
    template = templates(gid)[path]
    calls = itertools.count()

    @given(
        method=st.sampled_from(METHODS),
        query=queries(t),
        body=bodies(template),
        content_type=st.sampled_from(CONTENT_TYPES),
    )
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def one(
        method: str, query: list[tuple[str, str]], body: bytes, content_type: str | None
    ) -> None:
        before = fx.snapshot(t.env.db_url, t.sdkappid)
        r = t.send(method, path, query, body, content_type)
        fuzzcount.record("requests:hypothesis-v4")
        data = envelope(r, method)
        if data["ErrorCode"] not in (0, None):
            after = fx.snapshot(t.env.db_url, t.sdkappid)
            changed = [name for name in before if after[name] != before[name]]
            assert changed == [], (data, changed)
        elif data["ErrorCode"] == 0:
            read_back(t, path, data)
        if next(calls) % 3 == 0:
            valid_call(t, path)

    one()


@pytest.mark.parametrize(
    "path",
    [
        "",
        "x",
        "x/y/z",
        "%FF/%00",
        "im_open_login_svc",
        "im_open_login_svc/",
        "group_open_http_svc/nope",
        "openim/sendmsg/extra",
    ],
)
def test_unknown_and_malformed_v4_paths_get_an_envelope(target: Target, path: str) -> None:
    for method in ("POST", "GET", "HEAD", "DELETE"):
        r = target.send(
            method,
            path,
            [(k, quote(v, safe="")) for k, v in target.query()],
            b"{}",
            "application/json",
        )
        fuzzcount.record("requests:hypothesis-v4")
        data = envelope(r, method)
        if method != "HEAD":
            assert data["ErrorCode"] == 10003, (path, data)


def test_server_is_healthy_after_the_fuzzing(target: Target) -> None:
    node = target.env.node
    assert node.server.proc.poll() is None, "the server process died"
    assert httpx.get(f"{target.env.base}/healthz", timeout=10).json() == {"status": "ok"}
    for path in COMMAND_IDS:
        valid_call(target, path)
    problems = node.problems()
    if problems:
        at = node.lines.index(problems[0])
        raise AssertionError("the server logged errors:\n" + "".join(node.lines[at - 3 : at + 40]))


def test_fuzz_templates_cover_every_command() -> None:
    assert set(templates("g")) == set(COMMAND_IDS) == {f"{s}/{n}" for s, n in v4.COMMANDS}
