"""Settings read from the environment (IMCLOUD_*), with the zero-set-up defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

DEFAULT_DATABASE_URL = "sqlite:///var/imcloud.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    billing_tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    host: str = "127.0.0.1"
    port: int = 8080
    bill_day: int = 3  # B6: the bill for month M is issued on this day of M+1
    proration: Literal["month", "daily"] = "month"  # B4
    bill_check_seconds: float = 5.0  # how often a server looks for a passed bill day
    broker_url: str | None = None  # redis://... for several nodes; None = in-process
    ws_queue: int = 1000  # frames a slow client may fall behind before it is dropped
    ws_compression: bool = False  # per-message deflate costs ~100 KiB per connection
    log_format: Literal["json", "text"] = "json"  # `imcloud serve`'s log lines
    log_level: str = "info"
    access_log: bool = True  # one line per HTTP request (docs/operations.md)
    shutdown_seconds: float = 10.0  # SIGTERM: drain sockets, finish requests, exit
    # Frequency limits (SPEC §7); 0 = no limit. Tencent's defaults.
    rest_calls_per_second: int = 200  # 60007: v4 calls per app
    group_messages_per_second: int = 40  # 10023: messages per group, REST and WebSocket
    net_new_groups_per_day: int | None = None  # 10006: None = the catalog's (10,000)
    # Where the rate limits live: None = in-process (one node); redis://... = shared.
    # from_env defaults it to broker_url: nodes that share a broker share their limits.
    rate_limit_url: str | None = None

    @classmethod
    def from_env(cls, database_url: str | None = None) -> Settings:
        broker_url = os.environ.get("IMCLOUD_BROKER_URL") or None
        return cls(
            database_url=database_url
            or os.environ.get("IMCLOUD_DATABASE_URL")
            or DEFAULT_DATABASE_URL,
            billing_tz=ZoneInfo(os.environ.get("IMCLOUD_BILLING_TZ", "UTC")),
            host=os.environ.get("IMCLOUD_HOST", "127.0.0.1"),
            port=int(os.environ.get("IMCLOUD_PORT", "8080")),
            bill_day=int(os.environ.get("IMCLOUD_BILL_DAY", "3")),
            proration=_proration(os.environ.get("IMCLOUD_BILLING_PRORATION", "month")),
            bill_check_seconds=float(os.environ.get("IMCLOUD_BILL_CHECK_SECONDS", "5")),
            broker_url=broker_url,
            ws_queue=int(os.environ.get("IMCLOUD_WS_QUEUE", "1000")),
            ws_compression=os.environ.get("IMCLOUD_WS_COMPRESSION", "") in ("1", "true"),
            log_format=_log_format(os.environ.get("IMCLOUD_LOG_FORMAT", "json")),
            log_level=_log_level(os.environ.get("IMCLOUD_LOG_LEVEL", "info")),
            access_log=_flag(os.environ.get("IMCLOUD_ACCESS_LOG", "on"), "IMCLOUD_ACCESS_LOG"),
            shutdown_seconds=float(os.environ.get("IMCLOUD_SHUTDOWN_TIMEOUT", "10")),
            rest_calls_per_second=_count(
                "IMCLOUD_REST_CALLS_PER_SECOND", cls.rest_calls_per_second
            ),
            group_messages_per_second=_count(
                "IMCLOUD_GROUP_MESSAGES_PER_SECOND", cls.group_messages_per_second
            ),
            net_new_groups_per_day=(
                _count("IMCLOUD_NET_NEW_GROUPS_PER_DAY", 0)
                if os.environ.get("IMCLOUD_NET_NEW_GROUPS_PER_DAY")
                else None
            ),
            rate_limit_url=os.environ.get("IMCLOUD_RATE_LIMIT_URL") or broker_url,
        )


def _count(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name} is a whole number (0 = no limit), not {raw!r}")
    return int(raw)


def _proration(value: str) -> Literal["month", "daily"]:
    if value not in ("month", "daily"):
        raise ValueError("IMCLOUD_BILLING_PRORATION is 'month' or 'daily'")
    return "month" if value == "month" else "daily"


def _log_format(value: str) -> Literal["json", "text"]:
    if value not in ("json", "text"):
        raise ValueError("IMCLOUD_LOG_FORMAT is 'json' or 'text'")
    return "json" if value == "json" else "text"


def _log_level(value: str) -> str:
    if value.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise ValueError("IMCLOUD_LOG_LEVEL is debug, info, warning, error or critical")
    return value.lower()


def _flag(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "on", "yes"):
        return True
    if value.lower() in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{name} is 'on' or 'off'")
