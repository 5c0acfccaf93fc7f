"""The catalog: editions, value-added items, limits and prices, loaded from catalog.toml.

Everything the product sells is data. Code asks the catalog ("what is Pro's member
limit?", "what does history_days=90 cost on Flagship?") instead of knowing the answer,
so a price change is a one-line data change.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal

ItemValue = bool | int
Limit = int | None  # None = unlimited

ITEM_KEYS: tuple[str, ...] = (
    "unlimited_av_rooms",
    "content_filtering",
    "group_member_limit",
    "groups_per_user",
    "history_days",
)
LIMIT_KEYS: tuple[str, ...] = (
    "accounts",
    "dau",
    "groups_per_user",
    "group_members",
    "groups",
    "av_rooms",
    "history_days",
)


@dataclass(frozen=True)
class ItemOffer:
    """How one item is sold on one edition."""

    offered: bool
    free: ItemValue
    max: int | None = None
    price: Decimal | None = None
    steps: tuple[tuple[int, Decimal], ...] = ()

    def allowed(self, value: ItemValue) -> bool:
        if not self.offered:
            return value == self.free
        if isinstance(self.free, bool):
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        if self.steps:
            return value == self.free or any(value == s for s, _ in self.steps)
        assert self.max is not None
        return self.free <= value <= self.max

    def price_of(self, value: ItemValue) -> Decimal:
        """Monthly price of holding this item at `value` (0 at the free default)."""
        if value == self.free or value is False:
            return Decimal("0.00")
        if self.steps:
            for step, price in self.steps:
                if step == value:
                    return price
            raise ValueError(f"no price for level {value}")
        assert self.price is not None
        return self.price

    def describe_allowed(self) -> str:
        if not self.offered:
            return "not offered"
        if isinstance(self.free, bool):
            return "on or off"
        if self.steps:
            return ", ".join(str(v) for v in (self.free, *(s for s, _ in self.steps)))
        return f"{self.free} to {self.max}"


@dataclass(frozen=True)
class Item:
    key: str
    kind: Literal["switch", "range", "steps"]
    title: str
    raises: str | None
    offers: dict[str, ItemOffer]


@dataclass(frozen=True)
class Edition:
    key: str  # "trial" | "pro" | "flagship"
    name: str  # "Trial" | "Pro" | "Flagship"
    label: str
    postpaid: bool
    base_fee: Decimal
    order: int
    limits: dict[str, Limit]
    community: bool
    community_members: int


@dataclass(frozen=True)
class Overage:
    free: int
    unit: int
    price: Decimal


@dataclass(frozen=True)
class Catalog:
    currency: str
    editions: dict[str, Edition]
    items: dict[str, Item]
    overage: dict[str, Overage]

    def edition(self, key: str) -> Edition:
        return self.editions[key.lower()]

    def edition_by_name(self, name: str) -> Edition:
        for e in self.editions.values():
            if e.name.lower() == name.lower():
                return e
        raise KeyError(name)

    def offer(self, item: str, edition: str) -> ItemOffer:
        return self.items[item].offers[edition]

    def free_items(self, edition: str) -> dict[str, ItemValue]:
        return {k: self.items[k].offers[edition].free for k in ITEM_KEYS}

    def with_limit(self, key: str, value: Limit) -> Catalog:
        """The catalog with one limit set on every edition (an operator's setting)."""
        editions = {k: replace(e, limits={**e.limits, key: value})
                    for k, e in self.editions.items()}
        return replace(self, editions=editions)


def _limit(v: Any) -> Limit:
    if v == "unlimited":
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"limit must be an integer or 'unlimited', got {v!r}")
    return v


def _offer(raw: dict[str, Any]) -> ItemOffer:
    steps = tuple(
        sorted((int(k), Decimal(v)) for k, v in raw.get("steps", {}).items())
    )
    price = raw.get("price")
    return ItemOffer(
        offered=bool(raw["offered"]),
        free=raw["free"],
        max=raw.get("max"),
        price=Decimal(price) if price is not None else None,
        steps=steps,
    )


def parse(data: dict[str, Any]) -> Catalog:
    editions: dict[str, Edition] = {}
    for key, raw in data["editions"].items():
        limits = raw["limits"]
        editions[key] = Edition(
            key=key,
            name=raw["name"],
            label=raw["label"],
            postpaid=bool(raw["postpaid"]),
            base_fee=Decimal(raw["base_fee"]),
            order=int(raw["order"]),
            limits={k: _limit(limits[k]) for k in (*LIMIT_KEYS, "net_new_groups_per_day")},
            community=bool(limits["community"]),
            community_members=int(limits["community_members"]),
        )
    items: dict[str, Item] = {}
    for key in ITEM_KEYS:
        raw = data["items"][key]
        items[key] = Item(
            key=key,
            kind=raw["kind"],
            title=raw["title"],
            raises=raw.get("raises"),
            offers={e: _offer(raw[e]) for e in editions},
        )
    overage = {
        k: Overage(free=int(v["free"]), unit=int(v["unit"]), price=Decimal(v["price"]))
        for k, v in data["overage"].items()
    }
    return Catalog(currency=data["currency"], editions=editions, items=items, overage=overage)


@cache
def load(path: Path | None = None) -> Catalog:
    """The catalog shipped with imcloud (or one at `path`), parsed once."""
    p = path or Path(__file__).with_name("catalog.toml")
    with p.open("rb") as f:
        return parse(tomllib.load(f))
