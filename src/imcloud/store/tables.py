"""The schema. Alembic migrations (store/migrations) create exactly these tables."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; stored naive UTC so SQLite and PostgreSQL agree."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


metadata = sa.MetaData()

clock = sa.Table(
    "clock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("simulated", sa.Boolean, nullable=False),
    sa.Column("now", UTCDateTime, nullable=True),
)

console_accounts = sa.Table(
    "console_accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("secret_key", sa.String(64), nullable=False),
    sa.Column("admin_identifier", sa.String(64), nullable=False),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("console_accounts.id"), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # current configuration; plan_events holds how it got here
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("service_version", sa.String(16), nullable=False),
    sa.Column("unlimited_av_rooms", sa.Boolean, nullable=False),
    sa.Column("content_filtering", sa.Boolean, nullable=False),
    sa.Column("group_member_limit", sa.Integer, nullable=False),
    sa.Column("groups_per_user", sa.Integer, nullable=False),
    sa.Column("history_days", sa.Integer, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Index("ix_apps_owner", "owner_id"),
)

# Append-only: one row per lifecycle operation (R7), never updated or deleted.
plan_events = sa.Table(
    "plan_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("before", sa.JSON, nullable=True),
    sa.Column("after", sa.JSON, nullable=False),
    sa.Column("version_changed", sa.Boolean, nullable=False),
    sa.Column("items_changed", sa.JSON, nullable=False),
    sa.UniqueConstraint("sdkappid", "seq", name="uq_plan_events_app_seq"),
)


class Money(TypeDecorator[Decimal]):
    """Exact decimal money on every backend (a string on SQLite, which has no DECIMAL)."""

    impl = sa.String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(14, 2))
        return dialect.type_descriptor(sa.String(32))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError("money must be a Decimal")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


# Daily usage per app (SPEC §6), read by billing and the console charts: maxima of the day.
usage_daily = sa.Table(
    "usage_daily",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("dau", sa.Integer, nullable=False, default=0),
    sa.Column("groups", sa.Integer, nullable=False, default=0),
    sa.Column("av_rooms", sa.Integer, nullable=False, default=0),
)

# Issued bills (B6): one per app and month, never updated.
bills = sa.Table(
    "bills",
    metadata,
    sa.Column("number", sa.String(32), primary_key=True),
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("total", Money, nullable=False),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.UniqueConstraint("sdkappid", "month", name="uq_bills_app_month"),
)

# Completed bill runs: a month whose run finished has every bill it will ever have.
bill_runs = sa.Table(
    "bill_runs",
    metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("bills_issued", sa.Integer, nullable=False),
)


# ------------------------------------------------------------------ IM data plane

# Per-app counters checked with conditional UPDATEs (E1): the row is the lock.
im_app_counters = sa.Table(
    "im_app_counters",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), primary_key=True),
    sa.Column("accounts", sa.Integer, nullable=False, default=0),
    sa.Column("groups", sa.Integer, nullable=False, default=0),  # existing non-AV groups
    sa.Column("av_rooms", sa.Integer, nullable=False, default=0),  # existing AVChatRooms
    sa.Column("day", sa.Date, nullable=True),  # the day net_new_groups counts
    sa.Column("net_new_groups", sa.Integer, nullable=False, default=0),
)

im_accounts = sa.Table(
    "im_accounts",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), primary_key=True),
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("nick", sa.String(64), nullable=False, default=""),
    sa.Column("face_url", sa.String(500), nullable=False, default=""),
    sa.Column("joined_groups", sa.Integer, nullable=False, default=0),  # non-AV groups
    sa.Column("created_at", UTCDateTime, nullable=False),
)

im_groups = sa.Table(
    "im_groups",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), primary_key=True),
    sa.Column("group_id", sa.String(48), primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(32), nullable=True),
    sa.Column("introduction", sa.String(400), nullable=False, default=""),
    sa.Column("notification", sa.String(400), nullable=False, default=""),
    sa.Column("face_url", sa.String(500), nullable=False, default=""),
    sa.Column("apply_join_option", sa.String(16), nullable=False),
    # E3: the cap fixed at creation; None = no cap (AVChatRoom)
    sa.Column("max_member_count", sa.Integer, nullable=True),
    sa.Column("member_count", sa.Integer, nullable=False, default=0),
    sa.Column("last_msg_seq", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_im_groups_type", "sdkappid", "type"),
)

im_members = sa.Table(
    "im_members",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, primary_key=True),
    sa.Column("group_id", sa.String(48), primary_key=True),
    sa.Column("user_id", sa.String(32), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("joined_at", UTCDateTime, nullable=False),
    sa.ForeignKeyConstraint(["sdkappid", "group_id"], ["im_groups.sdkappid", "im_groups.group_id"],
                            ondelete="CASCADE"),
    sa.Index("ix_im_members_user", "sdkappid", "user_id"),
)

im_group_messages = sa.Table(
    "im_group_messages",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, primary_key=True),
    sa.Column("group_id", sa.String(48), primary_key=True),
    sa.Column("msg_seq", sa.BigInteger, primary_key=True),
    sa.Column("from_account", sa.String(32), nullable=False),
    sa.Column("random", sa.BigInteger, nullable=False),
    sa.Column("msg_body", sa.JSON, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=False),
    sa.ForeignKeyConstraint(["sdkappid", "group_id"], ["im_groups.sdkappid", "im_groups.group_id"],
                            ondelete="CASCADE"),
    sa.Index("ix_im_group_messages_time", "sdkappid", "sent_at"),
)

im_c2c_messages = sa.Table(
    "im_c2c_messages",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), nullable=False),
    sa.Column("from_account", sa.String(32), nullable=False),
    sa.Column("to_account", sa.String(32), nullable=False),
    sa.Column("random", sa.BigInteger, nullable=False),
    sa.Column("msg_body", sa.JSON, nullable=False),
    sa.Column("sent_at", UTCDateTime, nullable=False),
    sa.Index("ix_im_c2c_pair", "sdkappid", "from_account", "to_account", "sent_at"),
    sa.Index("ix_im_c2c_time", "sdkappid", "sent_at"),
)

# Operator-added words for content filtering (E4); the built-in list ships with the code.
im_filter_words = sa.Table(
    "im_filter_words",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), primary_key=True),
    sa.Column("word", sa.String(64), primary_key=True),
)

# Who was active on which day (SPEC §6): filled by WebSocket sessions, never by REST.
im_active_users = sa.Table(
    "im_active_users",
    metadata,
    sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("user_id", sa.String(32), primary_key=True),
)


# ------------------------------------------------------------------ web console

# Signed-in console sessions: only a SHA-256 of the cookie's token is stored, so a copy
# of the database opens no session. Times are real time, even on a simulated clock.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("console_accounts.id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Index("ix_console_sessions_account", "account_id"),
)

# Failed sign-ins per username (login throttling), shared by every node.
console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", UTCDateTime, nullable=False),
    sa.Column("locked_until", UTCDateTime, nullable=True),
)
