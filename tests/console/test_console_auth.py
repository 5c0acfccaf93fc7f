"""Console sign-in as a service, on SQLite and PostgreSQL: argon2id hashes, throttling
that locks a name after five failures and doubles each lock (even parallel guesses
cannot pass the limit), sessions that expire and end with a new password, and a first
run that sets the first admin's password only once."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from imcloud.clock import utcnow
from imcloud.errors import Refused
from imcloud.services import console_auth as ca
from imcloud.store.db import Database
from imcloud.store.tables import console_accounts, console_sessions
from tests.conftest import Cli, run

GOOD = "carol-correct-horse"


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """Only SQLite, for what does not depend on the backend (hashing, messages)."""
    path = tmp_path / "imcloud.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def _db(db_url: str, *users: str) -> Database:
    Cli(db_url)("init")
    for user in users:
        Cli(db_url)("console", "add-user", user, "--password", GOOD)
    return Database(db_url)


def test_lock_grows_from_30_seconds_and_is_capped() -> None:
    assert [ca.lock_seconds(n) for n in range(1, 10)] == [0, 0, 0, 0, 30, 60, 120, 240, 480]
    assert ca.lock_seconds(40) == ca.MAX_LOCK_SECONDS


def test_passwords_are_argon2id_hashes(sqlite_url: str) -> None:
    db_url = sqlite_url
    db = _db(db_url, "carol")

    async def hashed() -> str | None:
        try:
            async with db.read() as conn:
                return await conn.scalar(sa.select(console_accounts.c.password_hash)
                                         .where(console_accounts.c.username == "carol"))
        finally:
            await db.dispose()

    stored = run(hashed())
    assert stored is not None and stored.startswith("$argon2id$") and GOOD not in stored


def test_five_failures_lock_the_name_even_for_the_right_password(db_url: str) -> None:
    db = _db(db_url, "carol")
    t0 = utcnow()

    async def attempt(password: str, at_seconds: float) -> str:
        try:
            await ca.login(db, "carol", password, t0 + timedelta(seconds=at_seconds))
        except ca.Throttled as e:
            return f"locked {e.retry_after}"
        except Refused as e:
            return e.message
        return "ok"

    async def story() -> list[str]:
        try:
            out = [await attempt("wrong", 0) for _ in range(5)]
            out.append(await attempt(GOOD, 1))  # locked for 30 s from the 5th failure
            out.append(await attempt(GOOD, 29.5))
            out.append(await attempt("wrong", 31))  # the 6th failure: 60 s
            out.append(await attempt(GOOD, 32))
            out.append(await attempt(GOOD, 92))  # free again; success clears the count
            out.extend([await attempt("wrong", 93) for _ in range(4)])
            out.append(await attempt(GOOD, 94))
            return out
        finally:
            await db.dispose()

    wrong = ca.WRONG
    assert run(story()) == [wrong] * 5 + ["locked 29", "locked 1", wrong, "locked 59", "ok",
                                          wrong, wrong, wrong, wrong, "ok"]


def test_failures_are_forgotten_after_an_hour(sqlite_url: str) -> None:
    db_url = sqlite_url
    db = _db(db_url, "carol")
    t0 = utcnow()

    async def story() -> None:
        try:
            for _ in range(4):
                with pytest.raises(Refused):
                    await ca.login(db, "carol", "wrong", t0)
            later = t0 + ca.FORGET_AFTER + timedelta(seconds=1)
            with pytest.raises(Refused) as e:  # counts as the first again: no lock
                await ca.login(db, "carol", "wrong", later)
            assert not isinstance(e.value, ca.Throttled)
            await ca.login(db, "carol", GOOD, later)
        finally:
            await db.dispose()

    run(story())


def test_parallel_guesses_cannot_pass_the_limit(db_url: str) -> None:
    db = _db(db_url, "carol")

    async def story() -> list[str]:
        async def one() -> str:
            try:
                await ca.login(db, "carol", "wrong")
            except ca.Throttled:
                return "throttled"
            except Refused:
                return "checked"
            return "ok"

        try:
            return await asyncio.gather(*(one() for _ in range(10)))
        finally:
            await db.dispose()

    results = run(story())
    assert results.count("checked") == ca.FREE_FAILURES
    assert results.count("throttled") == 10 - ca.FREE_FAILURES


def test_unknown_names_are_refused_and_throttled_alike(sqlite_url: str) -> None:
    db_url = sqlite_url
    db = _db(db_url)

    async def story() -> list[str]:
        out = []
        try:
            for _ in range(6):
                try:
                    await ca.login(db, "nobody", "whatever")
                except Refused as e:
                    out.append("throttled" if isinstance(e, ca.Throttled) else e.message)
            return out
        finally:
            await db.dispose()

    assert run(story()) == [ca.WRONG] * 5 + ["throttled"]


def test_sessions_expire_and_end_with_a_new_password(db_url: str) -> None:
    db = _db(db_url, "carol")

    async def story() -> None:
        try:
            t0 = utcnow()
            opened = await ca.login(db, "carol", GOOD, t0)
            async with db.read() as conn:
                stored = list(await conn.scalars(sa.select(console_sessions.c.token_hash)))
                assert opened.token not in stored  # only its hash is kept
                live = await ca.session(conn, opened.token, t0 + timedelta(hours=11))
                assert live is not None and live.account.username == "carol"
                assert live.csrf_token == opened.session.csrf_token
                expired = t0 + timedelta(hours=ca.SESSION_HOURS, seconds=1)
                assert await ca.session(conn, opened.token, expired) is None
                assert await ca.session(conn, opened.token + "x", t0) is None
            digest = await ca.hash_password("a-brand-new-password")
            async with db.write() as conn:
                await ca.set_password(conn, "carol", digest)
            async with db.read() as conn:
                assert await ca.session(conn, opened.token) is None
            with pytest.raises(Refused):
                await ca.login(db, "carol", GOOD)
            await ca.login(db, "carol", "a-brand-new-password")
        finally:
            await db.dispose()

    run(story())


def test_first_run_sets_the_first_admin_password_only_once(db_url: str) -> None:
    db = _db(db_url)

    async def story() -> None:
        try:
            with pytest.raises(Refused, match="at least 8"):
                await ca.hash_password("short")
            first, second = (await ca.hash_password("the-first-password"),
                             await ca.hash_password("another-password"))
            async with db.write() as conn:
                assert await ca.needs_first_run(conn)
                admin = await ca.first_run(conn, first)
            assert admin.username == "admin" and admin.is_admin
            async with db.write() as conn:
                assert not await ca.needs_first_run(conn)
                with pytest.raises(Refused, match="already set up"):
                    await ca.first_run(conn, second)
            await ca.login(db, "admin", "the-first-password")
        finally:
            await db.dispose()

    run(story())


def test_add_user_refuses_duplicates_and_bad_names(sqlite_url: str) -> None:
    db_url = sqlite_url
    imcloud = Cli(db_url)
    imcloud("init")
    assert imcloud("console", "add-user", "dora", "--password", GOOD, "--admin") == {
        "username": "dora", "is_admin": True}
    assert "exists" in imcloud.refused("console", "add-user", "dora", "--password",
                                       GOOD)["message"]
    assert "exists" in imcloud.refused("console", "add-user", "admin", "--password",
                                       GOOD)["message"]
    assert "username" in imcloud.refused("console", "add-user", "bad name", "--password",
                                         GOOD)["message"]
    assert "at least 8" in imcloud.refused("console", "add-user", "erin", "--password",
                                           "short")["message"]
    assert imcloud("console", "passwd", "admin", "--password", GOOD) == {
        "username": "admin", "is_admin": True}
    assert "no console account" in imcloud.refused("console", "passwd", "nobody",
                                                   "--password", GOOD)["message"]
