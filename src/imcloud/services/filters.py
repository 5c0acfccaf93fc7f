"""Per-app content-filter words (E4): the operator's list, added to the built-in one."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud.errors import Code, refuse
from imcloud.im import filtering
from imcloud.services import apps
from imcloud.services.tenant import Tenant
from imcloud.store.tables import im_filter_words


async def words(conn: AsyncConnection, sdkappid: int) -> list[str]:
    await apps.get(conn, sdkappid)
    return sorted(await conn.scalars(sa.select(im_filter_words.c.word).where(
        im_filter_words.c.sdkappid == sdkappid)))


async def add(conn: AsyncConnection, sdkappid: int, new: list[str]) -> list[str]:
    await apps.get(conn, sdkappid)
    normal = sorted({filtering.normalise_word(w) for w in new})
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)
    if normal:
        await conn.execute(insert(im_filter_words).on_conflict_do_nothing(),
                           [{"sdkappid": sdkappid, "word": w} for w in normal])
    return await words(conn, sdkappid)


async def remove(conn: AsyncConnection, sdkappid: int, old: list[str]) -> list[str]:
    await apps.get(conn, sdkappid)
    normal = {filtering.normalise_word(w) for w in old}
    await conn.execute(sa.delete(im_filter_words).where(
        im_filter_words.c.sdkappid == sdkappid, im_filter_words.c.word.in_(normal)))
    return await words(conn, sdkappid)


async def check(conn: AsyncConnection, t: Tenant, msg_body: object) -> None:
    """E4: refuse a message whose text contains a blocked word, while the item is on."""
    if not t.app.plan.items["content_filtering"]:
        return
    texts = filtering.text_elements(msg_body)
    if not texts:
        return
    app_words = frozenset(await conn.scalars(sa.select(im_filter_words.c.word).where(
        im_filter_words.c.sdkappid == t.sdkappid)))
    f = filtering.filter_for(app_words)
    for text in texts:
        if f.blocks(text):
            raise refuse(Code.CONTENT_BLOCKED, "the message contains a blocked word")
