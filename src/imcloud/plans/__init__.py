"""Plan lifecycle rules R1–R8 (SPEC §4): pure functions over plain data, no I/O."""

from imcloud.plans.model import (
    AppPlan,
    ChangeRecord,
    Configure,
    Decision,
    Disable,
    Operation,
    Upgrade,
)
from imcloud.plans.rules import (
    changeable,
    decide,
    effective_limits,
    initial_plan,
    version_changed_in_month,
)

__all__ = [
    "AppPlan",
    "ChangeRecord",
    "Configure",
    "Decision",
    "Disable",
    "Operation",
    "Upgrade",
    "changeable",
    "decide",
    "effective_limits",
    "initial_plan",
    "version_changed_in_month",
]
