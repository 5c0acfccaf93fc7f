"""`imcloud backup` and `imcloud restore` for the SQLite default (docs/operations.md).

Backup is online: SQLite's backup API copies the database in one step, inside one read
transaction, so the copy is one consistent snapshot while servers keep writing (WAL lets
writers go on beside a reader). It is written next to its destination, checked
(`PRAGMA integrity_check`), synced and renamed into place: a backup file is whole or
absent.

Restore installs a copy with one atomic rename, and never under a running server: every
`imcloud serve` on a SQLite file holds a shared `flock` on `<file>.lock` while it runs,
and restore takes it exclusively (or refuses). The kernel drops the lock when a server
exits, even killed, so it never goes stale; a server that starts during a restore
waits for it. The database being replaced is kept beside it (`.pre-restore-<time>`,
with its WAL), because a restore that picked the wrong file must be undoable.
PostgreSQL has its own tools (pg_dump, pg_restore); these commands say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from imcloud.errors import Refused
from imcloud.store.db import sqlite_path

log = logging.getLogger("imcloud.backup")

SIDE_FILES = ("-wal", "-shm")


class NotSqlite(Exception):
    """The database is not a SQLite file: use the database's own tools."""


def database_file(url: str) -> Path:
    path = sqlite_path(url)
    if path is None:
        raise NotSqlite(url)
    return path


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


async def serve_lock(url: str, wait: float = 30.0) -> IO[str] | None:
    """A server's shared hold on its SQLite file (None for other databases); released
    by closing it, or by the process ending. Waits while a restore holds the file."""
    path = sqlite_path(url)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path(path).open("a")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise RuntimeError(f"{path} is being restored; try again when it is done") from None
            log.warning("waiting for the restore of %s to finish", path)
            await asyncio.sleep(0.5)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: sqlite3.Connection, dest: Path) -> str:
    """Copy a database into a new file in one step (one snapshot); its integrity_check
    result. The copy uses a rollback journal: a single self-contained file."""
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")
        return str(target.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        target.close()


def _schema(conn: sqlite3.Connection) -> str:
    """The migration the database is at; refuses a file that is not an imcloud database."""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        conn.execute("SELECT count(*) FROM apps").fetchone()
    except sqlite3.DatabaseError as e:
        raise Refused(f"not an imcloud database ({e})") from None
    return str(row[0]) if row else ""


def backup(url: str, dest: Path, *, force: bool = False) -> dict[str, Any]:
    """A consistent copy of the running database at `dest`."""
    src = database_file(url)
    if not src.is_file():
        raise Refused(f"no database at {src}")
    if dest.exists() and not force:
        raise Refused(f"{dest} exists; pass --force to replace it")
    if dest.exists() and dest.resolve() == src.resolve():
        raise Refused("the backup cannot replace the database itself")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    started = time.monotonic()
    source = sqlite3.connect(src, timeout=30)
    try:
        revision = _schema(source)
        integrity = _copy(source, partial)
        if integrity != "ok":
            raise Refused(f"the copy failed its integrity check: {integrity}")
        _fsync(partial)
        os.replace(partial, dest)
        _fsync(dest.parent)
    finally:
        source.close()
        partial.unlink(missing_ok=True)
    return {
        "database": str(src),
        "backup": str(dest),
        "bytes": dest.stat().st_size,
        "schema": revision,
        "integrity": integrity,
        "seconds": round(time.monotonic() - started, 3),
    }


def restore(url: str, source: Path) -> dict[str, Any]:
    """Replace the database with the backup at `source`; refused while a server runs."""
    target = database_file(url)
    if not source.is_file():
        raise Refused(f"no backup at {source}")
    if target.exists() and target.resolve() == source.resolve():
        raise Refused("the backup is the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    with lock_path(target).open("a") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(
                f"a server is using {target} (it holds {lock_path(target)}); "
                "stop every `imcloud serve` on it, then restore"
            ) from None
        return _install(source, target)


def _install(source: Path, target: Path) -> dict[str, Any]:
    partial = target.with_name(f".{target.name}.{os.getpid()}.restoring")
    try:
        backup_db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            revision = _schema(backup_db)
            integrity = _copy(backup_db, partial)
        finally:
            backup_db.close()
        if integrity != "ok":
            raise Refused(f"the backup failed its integrity check: {integrity}")
        _fsync(partial)
        kept = None
        if target.exists():  # keep the old database, with its WAL, beside the new one
            kept = target.with_name(
                f"{target.name}.pre-restore-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
            )
            os.link(target, kept)
        for suffix in SIDE_FILES:  # an old WAL must never meet the new file
            side = target.with_name(target.name + suffix)
            if side.exists():
                if kept is not None:
                    os.replace(side, kept.with_name(kept.name + suffix))
                else:
                    side.unlink()
        os.replace(partial, target)
        _fsync(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return {
        "database": str(target),
        "restored_from": str(source),
        "previous": str(kept) if kept else None,
        "schema": revision,
        "integrity": integrity,
    }
