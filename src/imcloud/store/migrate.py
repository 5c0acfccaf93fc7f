"""Bring a database to the newest schema (Alembic `upgrade head`)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from imcloud.store.db import sqlite_path


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "imcloud.store:migrations")
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str) -> None:
    """Synchronous: call it outside a running event loop (CLI, test set-up)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
