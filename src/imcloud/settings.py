"""Settings read from the environment (IMCLOUD_*), with the zero-set-up defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

DEFAULT_DATABASE_URL = "sqlite:///var/imcloud.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    billing_tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    host: str = "127.0.0.1"
    port: int = 8080

    @classmethod
    def from_env(cls, database_url: str | None = None) -> Settings:
        return cls(
            database_url=database_url
            or os.environ.get("IMCLOUD_DATABASE_URL")
            or DEFAULT_DATABASE_URL,
            billing_tz=ZoneInfo(os.environ.get("IMCLOUD_BILLING_TZ", "UTC")),
            host=os.environ.get("IMCLOUD_HOST", "127.0.0.1"),
            port=int(os.environ.get("IMCLOUD_PORT", "8080")),
        )
