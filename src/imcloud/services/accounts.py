"""Console accounts: who owns apps. (Passwords and sessions come with the console.)"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud.errors import NotFound
from imcloud.services import clock
from imcloud.store.tables import console_accounts

FIRST_ADMIN = "admin"


async def ensure_first_admin(conn: AsyncConnection) -> int:
    row = (
        await conn.execute(
            sa.select(console_accounts.c.id)
            .where(console_accounts.c.is_admin.is_(True))
            .order_by(console_accounts.c.id)
            .limit(1)
        )
    ).first()
    if row is not None:
        return int(row.id)
    result = await conn.execute(
        sa.insert(console_accounts).values(
            username=FIRST_ADMIN, is_admin=True, created_at=await clock.now(conn)
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def create(conn: AsyncConnection, username: str, *, is_admin: bool = False) -> int:
    result = await conn.execute(
        sa.insert(console_accounts).values(
            username=username, is_admin=is_admin, created_at=await clock.now(conn)
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def resolve_owner(conn: AsyncConnection, username: str | None) -> int:
    """The account named, or the first admin (SPEC §1: apps made from the CLI)."""
    q = sa.select(console_accounts.c.id)
    if username is None:
        q = q.where(console_accounts.c.is_admin.is_(True)).order_by(console_accounts.c.id)
    else:
        q = q.where(console_accounts.c.username == username)
    row = (await conn.execute(q.limit(1))).first()
    if row is None:
        raise NotFound(
            f"no console account {username!r}" if username else
            "no console admin: run `imcloud init`"
        )
    return int(row.id)
