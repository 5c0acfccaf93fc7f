"""Web console: sessions and login throttling

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 07:48:05.766176
"""

import sqlalchemy as sa
from alembic import op

import imcloud.store.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_login_failures",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", imcloud.store.tables.UTCDateTime(), nullable=False),
        sa.Column("locked_until", imcloud.store.tables.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", imcloud.store.tables.UTCDateTime(), nullable=False),
        sa.Column("expires_at", imcloud.store.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["console_accounts.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_console_sessions_account", ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_console_sessions_account")
    op.drop_table("console_sessions")
    op.drop_table("console_login_failures")
