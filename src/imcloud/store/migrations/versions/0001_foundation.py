"""foundation: clock, console accounts, apps, plan history

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from imcloud.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("simulated", sa.Boolean, nullable=False),
        sa.Column("now", UTCDateTime, nullable=True),
    )
    op.create_table(
        "console_accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "apps",
        sa.Column("sdkappid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret_key", sa.String(64), nullable=False),
        sa.Column("admin_identifier", sa.String(64), nullable=False),
        sa.Column(
            "owner_id", sa.Integer, sa.ForeignKey("console_accounts.id"), nullable=False
        ),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("service_version", sa.String(16), nullable=False),
        sa.Column("unlimited_av_rooms", sa.Boolean, nullable=False),
        sa.Column("content_filtering", sa.Boolean, nullable=False),
        sa.Column("group_member_limit", sa.Integer, nullable=False),
        sa.Column("groups_per_user", sa.Integer, nullable=False),
        sa.Column("history_days", sa.Integer, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    op.create_index("ix_apps_owner", "apps", ["owner_id"])
    op.create_table(
        "plan_events",
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


def downgrade() -> None:
    op.drop_table("plan_events")
    op.drop_index("ix_apps_owner", "apps")
    op.drop_table("apps")
    op.drop_table("console_accounts")
    op.drop_table("clock")
