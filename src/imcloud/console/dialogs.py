"""The Upgrade and Change Configuration Reminder dialogs: what each edition offers, the
values the dialog starts from, and turning the submitted form into a request.

A dialog shows every item offered on the chosen edition, starting from the value the
app would have there if the operator touched nothing (R4a, from `plans.rules`). The
request names only the items the operator moved away from that value — so a console
change is exactly the CLI change with the same flags, and R4 counts the same items.
A value R4a cannot keep (above the new edition's maximum) has no such start: it starts
at the maximum and is always named, so the operator chooses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from imcloud.catalog import ITEM_KEYS, Catalog, ItemValue
from imcloud.console.ops import Kind, PlanRequest
from imcloud.errors import Refused
from imcloud.plans import AppPlan
from imcloud.plans.rules import carry_items


def baseline(catalog: Catalog, plan: AppPlan, edition: str) -> dict[str, ItemValue | None]:
    """Per item offered on `edition`: its value after a change to `edition` that names
    no item (R4a), or None where R4a would refuse to keep it."""
    offered = [k for k in ITEM_KEYS if catalog.offer(k, edition).offered]
    if edition == plan.edition:
        return {k: plan.items[k] for k in offered}
    out: dict[str, ItemValue | None] = {}
    for key in offered:  # R4a treats items one by one: ask for each alone
        others = {j: catalog.offer(j, edition).free for j in offered if j != key}
        try:
            out[key] = carry_items(catalog, plan.items, edition, others)[key]
        except Refused:
            out[key] = None
    return out


def _top(catalog: Catalog, key: str, edition: str) -> ItemValue:
    offer = catalog.offer(key, edition)
    if offer.steps:
        return offer.steps[-1][0]
    assert offer.max is not None
    return offer.max


@dataclass(frozen=True)
class Field:
    key: str
    title: str
    kind: str  # switch | range | steps | unsupported
    name: str  # the form field: "{edition}.{key}"
    value: Any
    start: Any  # the value the dialog starts from (data-start, for "changed" marks)
    free: ItemValue
    max: int | None
    steps: tuple[tuple[int, Decimal], ...]
    price: Decimal | None
    must_choose: bool
    note: str  # why unsupported, or the price rule


@dataclass(frozen=True)
class EditionChoice:
    key: str
    name: str
    label: str
    base_fee: Decimal
    fields: list[Field]
    current: bool


def note(catalog: Catalog, key: str, edition: str) -> str:
    item = catalog.items[key]
    offer = catalog.offer(key, edition)
    ed = catalog.edition(edition)
    if not offer.offered:
        if item.raises and ed.limits.get(item.raises, 0) is None:
            return f"{ed.name} already includes it: unlimited"
        return f"not available on {ed.name}"
    if item.kind == "switch":
        return ""
    if item.kind == "range":
        return f"{offer.free:,} included; up to {offer.max:,}"
    return f"{offer.free} days included"


def editions(catalog: Catalog, plan: AppPlan, keys: list[str],
             submitted: Mapping[str, str] | None = None) -> list[EditionChoice]:
    out = []
    for ek in keys:
        ed = catalog.edition(ek)
        start = baseline(catalog, plan, ek) if ed.postpaid else {}
        fields = []
        for key in ITEM_KEYS if ed.postpaid else ():
            item = catalog.items[key]
            offer = catalog.offer(key, ek)
            name = f"{ek}.{key}"
            if not offer.offered:
                fields.append(Field(key, item.title, "unsupported", name, None, None,
                                    offer.free, None, (), None, False, note(catalog, key, ek)))
                continue
            base = start[key]
            first = base if base is not None else _top(catalog, key, ek)
            value: Any = first
            if submitted is not None and name in submitted:
                raw = submitted[name]
                value = (raw == "on") if item.kind == "switch" else raw
            fields.append(Field(key, item.title, item.kind, name, value, first, offer.free,
                                offer.max, offer.steps, offer.price, base is None,
                                note(catalog, key, ek)))
        out.append(EditionChoice(ek, ed.name, ed.label, ed.base_fee, fields,
                                 ek == plan.edition))
    return out


def _value(catalog: Catalog, key: str, raw: str) -> ItemValue:
    item = catalog.items[key]
    if item.kind == "switch":
        return raw in ("on", "true", "1")
    try:
        return int(raw.strip())
    except ValueError:
        raise Refused(f"{item.title}: enter a whole number", rule="R8") from None


def parse(data: Mapping[str, str], catalog: Catalog, plan: AppPlan) -> PlanRequest:
    """The request a dialog's form makes (see the module's docstring)."""
    op = data.get("op", "")
    if op == "disable":
        return PlanRequest("disable", confirm=data.get("confirm", ""))
    if op not in ("upgrade", "configure"):
        raise Refused("unknown operation", rule="R8")
    edition = data.get("edition", "")
    if edition not in catalog.editions:
        raise Refused("choose a service version", rule="R8")
    if not catalog.edition(edition).postpaid:
        kind: Kind = "downgrade" if op == "configure" else "upgrade"
        return PlanRequest(kind, edition)
    items: dict[str, ItemValue] = {}
    for key, base in baseline(catalog, plan, edition).items():
        raw = data.get(f"{edition}.{key}")
        if raw is None:
            if base is None:
                raise Refused(f"{catalog.items[key].title}: choose a value", rule="R8")
            continue
        value = _value(catalog, key, raw)
        if base is None or value != base:
            items[key] = value
    return PlanRequest("upgrade" if op == "upgrade" else "configure", edition, items)


def names_nothing(req: PlanRequest, plan: AppPlan) -> bool:
    """A change of configuration that asks for nothing yet (the dialog just opened)."""
    return (req.kind == "configure" and not req.items
            and (req.edition or plan.edition) == plan.edition)
