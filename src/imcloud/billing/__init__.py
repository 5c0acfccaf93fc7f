"""Billing rules B1–B7 (SPEC §5): pure functions from plan history and usage to bills."""

from imcloud.billing.engine import (
    BillLine,
    DailyUsage,
    Policy,
    Preview,
    bill_lines,
    billable,
    monthly_fee,
    preview,
    total,
)

__all__ = [
    "BillLine",
    "DailyUsage",
    "Policy",
    "Preview",
    "bill_lines",
    "billable",
    "monthly_fee",
    "preview",
    "total",
]
