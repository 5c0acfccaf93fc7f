"""Console sign-in: passwords (argon2id), sessions, login throttling, the first run.

The only writer of `console_accounts.password_hash`, `console_sessions` and
`console_login_failures`. Everything here runs on real time (`imcloud.clock.utcnow`),
never the simulated clock: a session opened on a database whose clock says 2019 must
not be born expired, and a lock-out must end when the wall clock says so.

- Passwords are hashed with argon2id (argon2-cffi's defaults); hashing runs in a
  thread so the event loop keeps serving — always *before* a transaction opens
  (`hash_password` makes the `PasswordHash` the writers take): a transaction must not
  wait for anything but the database. A hash made with weaker parameters than today's
  is replaced at the next successful sign-in.
- A session is a random token in the browser's cookie; the database keeps only its
  SHA-256, with a CSRF token and an expiry (`SESSION_HOURS`, absolute).
- Throttling is per username and in the database, so every node sees it: the first
  `FREE_FAILURES` consecutive failures cost nothing; the attempt that makes it
  `FREE_FAILURES` locks the name for `LOCK_SECONDS`, and every failure after a lock
  doubles the next lock (up to `MAX_LOCK_SECONDS`). While locked, no password is even
  checked — the right one is refused too. A success clears the count; failures older
  than `FORGET_AFTER` are forgotten. The attempt is counted *before* the password is
  checked, in the same statement that checks the lock, so parallel guesses cannot slip
  past the limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NewType

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud.clock import utcnow
from imcloud.errors import Refused
from imcloud.services import accounts
from imcloud.store.db import Database
from imcloud.store.tables import console_accounts, console_login_failures, console_sessions

SESSION_HOURS = 12
FREE_FAILURES = 5
LOCK_SECONDS = 30
MAX_LOCK_SECONDS = 15 * 60
FORGET_AFTER = timedelta(hours=1)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

_hasher = PasswordHasher()

PasswordHash = NewType("PasswordHash", str)


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    is_admin: bool


@dataclass(frozen=True)
class Session:
    account: Account
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Opened:
    """A session just opened: `token` goes into the cookie and nowhere else."""

    token: str
    session: Session


class Throttled(Refused):
    """Sign-in refused because the username is locked for `retry_after` seconds."""

    def __init__(self, retry_after: int):
        unit = "second" if retry_after == 1 else "seconds"
        super().__init__(
            f"Too many failed sign-ins for this account. Try again in {retry_after} {unit}."
        )
        self.retry_after = retry_after


WRONG = "Wrong username or password."


# ------------------------------------------------------------------ passwords


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise Refused("a console username is 1 to 64 letters, digits or . _ @ - "
                      "(starting with a letter or digit)")
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Refused(f"a console password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise Refused(f"a console password has at most {MAX_PASSWORD} characters")
    return password


async def hash_password(password: str) -> PasswordHash:
    """Check the password's length and hash it (in a thread). Call it before opening
    the transaction that stores the hash."""
    return PasswordHash(await asyncio.to_thread(_hasher.hash, check_password(password)))


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    """Checked against when the username has no password, so both cost the same."""
    return _hasher.hash(secrets.token_hex(16))


async def add_user(conn: AsyncConnection, username: str, digest: PasswordHash, *,
                   is_admin: bool = False) -> Account:
    """A new console account with a password (`imcloud console add-user`)."""
    check_username(username)
    exists = await conn.scalar(
        sa.select(console_accounts.c.id).where(console_accounts.c.username == username))
    if exists is not None:
        raise Refused(f"console account {username!r} exists; set its password with "
                      "`imcloud console passwd`")
    account_id = await accounts.create(conn, username, is_admin=is_admin)
    await conn.execute(sa.update(console_accounts)
                       .where(console_accounts.c.id == account_id)
                       .values(password_hash=digest))
    return Account(account_id, username, is_admin)


async def set_password(conn: AsyncConnection, username: str,
                       digest: PasswordHash) -> Account:
    """Set (or reset) an account's password; its open sessions end and its failed
    sign-ins are forgotten."""
    row = (await conn.execute(
        sa.select(console_accounts).where(console_accounts.c.username == username)
        .with_for_update())).first()
    if row is None:
        raise Refused(f"no console account {username!r}")
    await conn.execute(sa.update(console_accounts).where(console_accounts.c.id == row.id)
                       .values(password_hash=digest))
    await conn.execute(sa.delete(console_sessions)
                       .where(console_sessions.c.account_id == row.id))
    await conn.execute(sa.delete(console_login_failures)
                       .where(console_login_failures.c.username == username))
    return Account(int(row.id), row.username, bool(row.is_admin))


async def needs_first_run(conn: AsyncConnection) -> bool:
    """True while no console account has a password: the first-run page sets one."""
    has = await conn.scalar(sa.select(console_accounts.c.id)
                            .where(console_accounts.c.password_hash.is_not(None)).limit(1))
    return has is None


async def first_run(conn: AsyncConnection, digest: PasswordHash) -> Account:
    """Give the first admin (made by `imcloud init`) its password — only while no account
    has one. Call inside a write transaction: two browsers racing, one wins."""
    admin_id = await accounts.ensure_first_admin(conn)
    await conn.execute(sa.select(console_accounts.c.id).with_for_update())
    if not await needs_first_run(conn):
        raise Refused("the console is already set up; sign in")
    await conn.execute(sa.update(console_accounts).where(console_accounts.c.id == admin_id)
                       .values(password_hash=digest))
    row = (await conn.execute(
        sa.select(console_accounts).where(console_accounts.c.id == admin_id))).one()
    return Account(int(row.id), row.username, bool(row.is_admin))


# ------------------------------------------------------------------ sign-in


def lock_seconds(failures: int) -> int:
    """How long the `failures`-th consecutive failure locks the name (0: not at all)."""
    if failures < FREE_FAILURES:
        return 0
    return int(min(MAX_LOCK_SECONDS, LOCK_SECONDS * 2 ** (failures - FREE_FAILURES)))


def _upsert(conn: AsyncConnection) -> Any:
    """INSERT … ON CONFLICT for this dialect (both have the same interface)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(console_login_failures)


async def _reserve_attempt(db: Database, username: str, now: datetime) -> None:
    """Count this attempt as a failure in advance, unless the name is locked (then
    refuse it without counting)."""
    t = console_login_failures
    async with db.write() as conn:
        stmt = _upsert(conn).values(username=username, failures=1, last_failure_at=now,
                                    locked_until=None)
        cutoff = sa.bindparam("cutoff", now - FORGET_AFTER, type_=t.c.last_failure_at.type)
        at = sa.bindparam("at", now, type_=t.c.last_failure_at.type)
        stmt = stmt.on_conflict_do_update(
            index_elements=["username"],
            set_={
                "failures": sa.case((t.c.last_failure_at < cutoff, 1),
                                    else_=t.c.failures + 1),
                "last_failure_at": now,
            },
            where=sa.or_(t.c.locked_until.is_(None), t.c.locked_until <= at),
        ).returning(t.c.failures)
        failures = (await conn.execute(stmt)).scalar()
        if failures is None:  # locked: the WHERE kept the row as it was
            until = await conn.scalar(sa.select(t.c.locked_until).where(t.c.username == username))
            assert until is not None
            raise Throttled(max(1, math.ceil((until - now).total_seconds())))
        lock = lock_seconds(int(failures))
        await conn.execute(sa.update(t).where(t.c.username == username).values(
            locked_until=now + timedelta(seconds=lock) if lock else None))


async def login(db: Database, username: str, password: str,
                now: datetime | None = None) -> Opened:
    """Check a username and password and open a session; Refused (WRONG or Throttled)
    otherwise. Unknown names, accounts without a password and wrong passwords are
    refused alike, in about the same time."""
    now = now or utcnow()
    username = username.strip()[:64]
    if not USERNAME.fullmatch(username):  # no account can have it (nor can NUL be stored)
        await asyncio.to_thread(_verify, _dummy_hash(), password)
        raise Refused(WRONG)
    await _reserve_attempt(db, username, now)
    async with db.read() as conn:
        row = (await conn.execute(sa.select(console_accounts)
                                  .where(console_accounts.c.username == username))).first()
    stored = row.password_hash if row is not None else None
    ok = await asyncio.to_thread(_verify, stored or _dummy_hash(), password)
    if row is None or stored is None or not ok:
        raise Refused(WRONG)
    account = Account(int(row.id), row.username, bool(row.is_admin))
    rehashed = (await asyncio.to_thread(_hasher.hash, password)
                if _hasher.check_needs_rehash(stored) else None)
    async with db.write() as conn:
        await conn.execute(sa.delete(console_login_failures)
                           .where(console_login_failures.c.username == username))
        if rehashed is not None:
            await conn.execute(sa.update(console_accounts)
                               .where(console_accounts.c.id == account.id)
                               .values(password_hash=rehashed))
        return await open_session(conn, account, now)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(conn: AsyncConnection, account: Account,
                       now: datetime | None = None) -> Opened:
    now = now or utcnow()
    # expired sessions go as new ones come, so the table stays small
    await conn.execute(sa.delete(console_sessions).where(console_sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(32)
    s = Session(account, secrets.token_urlsafe(32), now + timedelta(hours=SESSION_HOURS))
    await conn.execute(sa.insert(console_sessions).values(
        token_hash=_digest(token), account_id=account.id, csrf_token=s.csrf_token,
        created_at=now, expires_at=s.expires_at))
    return Opened(token, s)


async def session(conn: AsyncConnection, token: str | None,
                  now: datetime | None = None) -> Session | None:
    """The live session the cookie's token opens, if any."""
    if not token or len(token) > 128:
        return None
    now = now or utcnow()
    s, a = console_sessions, console_accounts
    row = (await conn.execute(
        sa.select(a.c.id, a.c.username, a.c.is_admin, s.c.csrf_token, s.c.expires_at)
        .select_from(s.join(a, a.c.id == s.c.account_id))
        .where(s.c.token_hash == _digest(token), s.c.expires_at > now))).first()
    if row is None:
        return None
    return Session(Account(int(row.id), row.username, bool(row.is_admin)), row.csrf_token,
                   row.expires_at)


async def close_session(conn: AsyncConnection, token: str | None) -> None:
    if token:
        await conn.execute(sa.delete(console_sessions)
                           .where(console_sessions.c.token_hash == _digest(token)))
