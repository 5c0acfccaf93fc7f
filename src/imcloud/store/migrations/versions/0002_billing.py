"""billing: daily usage, bills, bill runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from imcloud.store.tables import Money, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("dau", sa.Integer, nullable=False),
        sa.Column("groups", sa.Integer, nullable=False),
        sa.Column("av_rooms", sa.Integer, nullable=False),
    )
    op.create_table(
        "bills",
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("sdkappid", sa.BigInteger, sa.ForeignKey("apps.sdkappid"), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("total", Money, nullable=False),
        sa.Column("lines", sa.JSON, nullable=False),
        sa.UniqueConstraint("sdkappid", "month", name="uq_bills_app_month"),
    )
    _freeze_bills()
    op.create_table(
        "bill_runs",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("finished_at", UTCDateTime, nullable=False),
        sa.Column("bills_issued", sa.Integer, nullable=False),
    )


def _freeze_bills() -> None:
    """Issued bills never change (B6): the database itself refuses UPDATE and DELETE."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER bills_no_{action.lower()} BEFORE {action} ON bills "
                "BEGIN SELECT RAISE(ABORT, 'issued bills never change'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION bills_frozen() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'issued bills never change'; END $$"
        )
        op.execute(
            "CREATE TRIGGER bills_frozen BEFORE UPDATE OR DELETE ON bills "
            "FOR EACH ROW EXECUTE FUNCTION bills_frozen()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS bills_frozen ON bills")
        op.execute("DROP FUNCTION IF EXISTS bills_frozen()")
    op.drop_table("bill_runs")
    op.drop_table("bills")
    op.drop_table("usage_daily")
