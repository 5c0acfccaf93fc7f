"""The v4 isolation and auth matrix: EVERY command of `v4.COMMANDS` × every credential
that must not work, over real HTTP to a real `imcloud serve`, on SQLite and PostgreSQL.

Each call carries a body that would succeed (and change rows: destroy the group, delete
the account, …) with the right credentials, so a refusal that let it through would
show. Every call is refused with the code SPEC §7's order gives (60012/60006 → 60016 →
70xxx → 60010 → 10003 → 10004), and every row of both apps is the same before and
after. The console half of the matrix is tests/console/test_console_matrix.py.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from imcloud.api import v4
from imcloud.im import usersig
from tests.integration import v4_fixtures as fx
from tests.integration.test_v4_errors import envelope, populated, valid_bodies
from tests.integration.v4_fixtures import Env

ADMIN = "administrator"
COMMANDS = [f"{s}/{n}" for s, n in v4.COMMANDS]


@dataclass
class Apps:
    """App A (the target, populated), app B (another tenant, populated), and a disabled
    app D; A's body for every command."""

    env: Env
    a: dict[str, Any]
    b: dict[str, Any]
    d: dict[str, Any]
    bodies: dict[str, dict[str, Any]]

    def call(
        self,
        path: str,
        *,
        sdkappid: Any,
        identifier: str | None,
        sig: str | None,
        body: dict[str, Any] | bytes | None = None,
    ) -> dict[str, Any]:
        query = {
            "sdkappid": sdkappid,
            "identifier": identifier,
            "usersig": sig,
            "random": 1,
            "contenttype": "json",
        }
        url = f"{self.env.base}/v4/{path}?" + "&".join(
            f"{k}={v}" for k, v in query.items() if v is not None
        )
        content = (
            body
            if isinstance(body, bytes)
            else orjson.dumps(self.bodies[path] if body is None else body)
        )
        return envelope(httpx.post(url, content=content, timeout=30))


@pytest.fixture(scope="module", params=fx.BACKENDS)
def apps(request: pytest.FixtureRequest) -> Iterator[Apps]:
    for env in fx.serve(request):
        a, _, gid = populated(env, "pro")
        b, _, _ = populated(env, "pro")
        d, vd, _ = populated(env)
        env.imcloud("app", "disable", str(d["sdkappid"]), "--confirm", d["name"])
        assert vd(fx.CHECK, {"CheckItem": [{"UserID": "owner"}]})["ErrorCode"] == 60016
        yield Apps(env, a, b, d, valid_bodies(gid, "owner", "peer"))


def sig(
    app: dict[str, Any],
    who: str = ADMIN,
    *,
    appid: int | None = None,
    expire: int = 3600,
    now: int | None = None,
) -> str:
    return usersig.generate(appid or app["sdkappid"], app["secret_key"], who, expire, now)


# (name, credentials for app A, the code SPEC §7 gives)
Variant = tuple[str, Callable[[Apps], dict[str, Any]], int]
VARIANTS: list[Variant] = [
    ("no sdkappid", lambda m: {"sdkappid": None, "identifier": ADMIN, "sig": sig(m.a)}, 60012),
    ("unknown sdkappid", lambda m: {"sdkappid": 1000, "identifier": ADMIN, "sig": sig(m.a)}, 60006),
    (
        "another app's admin sig",
        lambda m: {"sdkappid": m.a["sdkappid"], "identifier": ADMIN, "sig": sig(m.b)},
        70014,
    ),
    (
        "another app's key, this sdkappid",
        lambda m: {
            "sdkappid": m.a["sdkappid"],
            "identifier": ADMIN,
            "sig": sig(m.b, appid=m.a["sdkappid"]),
        },
        70009,
    ),
    (
        "a user's sig",
        lambda m: {"sdkappid": m.a["sdkappid"], "identifier": "owner", "sig": sig(m.a, "owner")},
        60010,
    ),
    (
        "a user's sig as the admin",
        lambda m: {"sdkappid": m.a["sdkappid"], "identifier": ADMIN, "sig": sig(m.a, "owner")},
        70013,
    ),
    (
        "an expired admin sig",
        lambda m: {
            "sdkappid": m.a["sdkappid"],
            "identifier": ADMIN,
            "sig": sig(m.a, expire=60, now=int(time.time()) - 3600),
        },
        70001,
    ),
    (
        "an expired user sig",
        lambda m: {
            "sdkappid": m.a["sdkappid"],
            "identifier": "owner",
            "sig": sig(m.a, "owner", expire=60, now=int(time.time()) - 3600),
        },
        70001,
    ),
    ("no sig", lambda m: {"sdkappid": m.a["sdkappid"], "identifier": ADMIN, "sig": None}, 70003),
    (
        "disabled app, its admin sig",
        lambda m: {"sdkappid": m.d["sdkappid"], "identifier": ADMIN, "sig": sig(m.d)},
        60016,
    ),
    (
        "disabled app, an expired user sig",
        lambda m: {
            "sdkappid": m.d["sdkappid"],
            "identifier": "owner",
            "sig": sig(m.d, "owner", expire=60, now=int(time.time()) - 3600),
        },
        60016,
    ),
    (
        "disabled app, another app's sig",
        lambda m: {"sdkappid": m.d["sdkappid"], "identifier": ADMIN, "sig": sig(m.a)},
        60016,
    ),
]


@pytest.mark.parametrize("path", COMMANDS)
def test_every_command_refuses_every_wrong_credential_and_changes_nothing(
    apps: Apps, path: str
) -> None:
    m = apps
    before = {
        app["sdkappid"]: fx.snapshot(m.env.db_url, app["sdkappid"]) for app in (m.a, m.b, m.d)
    }
    for name, creds, code in VARIANTS:
        c = creds(m)
        data = m.call(path, sdkappid=c["sdkappid"], identifier=c["identifier"], sig=c["sig"])
        assert data["ErrorCode"] == code, (path, name, data)
    for sdkappid, rows in before.items():
        assert fx.snapshot(m.env.db_url, sdkappid) == rows, (path, sdkappid)


def test_spec_order_auth_before_command_and_body(apps: Apps) -> None:
    """60010 comes before 10003 (unknown command) and 10004 (bad body); 70xxx before
    them too; nothing is ever parsed for a caller who is not the admin."""
    m = apps
    before = fx.snapshot(m.env.db_url, m.a["sdkappid"])
    user = {"sdkappid": m.a["sdkappid"], "identifier": "owner", "sig": sig(m.a, "owner")}
    expired = {
        "sdkappid": m.a["sdkappid"],
        "identifier": ADMIN,
        "sig": sig(m.a, expire=60, now=int(time.time()) - 3600),
    }
    for creds, code in ((user, 60010), (expired, 70001)):
        assert m.call("nope_svc/nope", **creds, body=b"{}")["ErrorCode"] == code
        assert m.call(fx.CREATE, **creds, body=b"not json")["ErrorCode"] == code
        assert m.call(fx.CREATE, **creds, body={"Type": 5})["ErrorCode"] == code
    assert fx.snapshot(m.env.db_url, m.a["sdkappid"]) == before


def test_the_right_credentials_still_work_after_the_matrix(apps: Apps) -> None:
    """The control: the same bodies with A's admin sig succeed (so the refusals above
    were about the credentials, not the bodies)."""
    m = apps
    for path in (fx.CHECK, fx.INFO, fx.MEMBERS, fx.GROUP_HISTORY, fx.ROAM, fx.APPINFO):
        data = m.call(path, sdkappid=m.a["sdkappid"], identifier=ADMIN, sig=sig(m.a))
        assert data["ErrorCode"] == 0, (path, data)


# ------------------------------------------------------------------ constant time


def test_usersig_signature_is_compared_in_constant_time(apps: Apps) -> None:
    """The HMAC of a UserSig is compared with hmac.compare_digest, never `==` (whose time
    leaks how many leading characters match). Proven by running the verifier: a sig
    whose HMAC is wrong but of the right length is refused (70009), and the profiler
    sees compare_digest called with the expected and the given HMAC."""
    m = apps
    app = m.a
    good = sig(app)
    doc = usersig.peek(good)
    mac = str(doc["TLS.sig"])
    forged_mac = ("B" if mac[0] != "B" else "C") + mac[1:]  # same length, first char off
    forged = _repack({**doc, "TLS.sig": forged_mac})
    calls: list[tuple[Any, ...]] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") == "compare_digest":
            calls.append(tuple(frame.f_locals.get(k) for k in ("expected", "given")))

    sys.setprofile(profile)
    try:
        with pytest.raises(usersig.UserSigError) as refused:
            usersig.verify(forged, app["sdkappid"], app["secret_key"], ADMIN, int(time.time()))
    finally:
        sys.setprofile(None)
    assert refused.value.code == usersig.BAD_SIGNATURE
    assert len(calls) == 1 and calls[0][1] == forged_mac and len(calls[0][0]) == len(mac)
    # and the source of the comparison: no `==` / `!=` on the signature
    source = inspect.getsource(usersig.verify)
    assert "hmac.compare_digest(" in source
    assert not any(
        op in line
        for line in source.splitlines()
        if "given" in line
        for op in ("== given", "given ==", "!= given", "given !=")
    )
    # the same over HTTP
    data = m.call(fx.CHECK, sdkappid=app["sdkappid"], identifier=ADMIN, sig=forged)
    assert data["ErrorCode"] == 70009


def _repack(doc: dict[str, Any]) -> str:
    import base64
    import json
    import zlib

    packed = zlib.compress(json.dumps(doc).encode())
    return base64.b64encode(packed).decode().translate(str.maketrans("+/=", "*-_"))
