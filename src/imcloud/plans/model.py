"""Plain data the lifecycle rules work on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from imcloud.catalog import ITEM_KEYS, ItemValue

Status = Literal["active", "disabled"]


@dataclass(frozen=True)
class AppPlan:
    """An app's configuration at one moment: what plan history snapshots store."""

    status: Status
    edition: str  # catalog edition key: "trial" | "pro" | "flagship"
    items: Mapping[str, ItemValue]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "edition": self.edition,
            "items": {k: self.items[k] for k in ITEM_KEYS},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppPlan:
        return cls(
            status=data["status"],
            edition=data["edition"],
            items={k: data["items"][k] for k in ITEM_KEYS},
        )


@dataclass(frozen=True)
class ChangeRecord:
    """What R4 needs to know of one past operation."""

    at: datetime
    version_changed: bool
    items_changed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Upgrade:
    """R1: Trial → Pro/Flagship with chosen items."""

    edition: str
    items: Mapping[str, ItemValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Configure:
    """R2/R3: change version and/or items on a postpaid app (edition "trial" = downgrade)."""

    edition: str | None = None
    items: Mapping[str, ItemValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Disable:
    """R6: final; `confirm` must repeat the app's name."""

    confirm: str


Operation = Upgrade | Configure | Disable


@dataclass(frozen=True)
class Decision:
    """An allowed operation: the plan before and after, and what R4 counts of it."""

    operation: Literal["upgrade", "configure", "downgrade", "disable"]
    before: AppPlan
    after: AppPlan
    version_changed: bool
    items_changed: frozenset[str]
