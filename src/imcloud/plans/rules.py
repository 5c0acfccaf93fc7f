"""The lifecycle rules, each decided here and nowhere else.

`decide` answers "may this operation happen now, and what is the plan afterwards?";
`changeable` answers "what may still change this month?" with the same R4 logic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Literal

from imcloud.catalog import ITEM_KEYS, Catalog, ItemValue, Limit
from imcloud.clock import month_bounds
from imcloud.errors import APP_DISABLED, Refused
from imcloud.plans.model import (
    AppPlan,
    ChangeRecord,
    Decision,
    Disable,
    Operation,
    Upgrade,
)


def initial_plan(catalog: Catalog) -> AppPlan:
    """Every new app starts on Trial with Trial's free item values."""
    trial = next(e for e in catalog.editions.values() if not e.postpaid)
    return AppPlan(status="active", edition=trial.key, items=catalog.free_items(trial.key))


def effective_limits(plan: AppPlan, catalog: Catalog) -> dict[str, Limit]:
    """Edition limits raised by the items (SPEC §2, §3; 'unlimited' is None)."""
    limits = {k: v for k, v in catalog.edition(plan.edition).limits.items()}
    for key, item in catalog.items.items():
        if item.raises is None:
            continue
        value = plan.items[key]
        if item.kind == "switch":
            if value is True:
                limits[item.raises] = None
        else:
            assert isinstance(value, int)
            limits[item.raises] = value
    return limits


def _in_month(records: Iterable[ChangeRecord], now: datetime, tz: tzinfo) -> list[ChangeRecord]:
    start, end = month_bounds(now, tz)
    return [r for r in records if start <= r.at < end and r.at <= now]


def version_changed_in_month(records: Iterable[ChangeRecord], now: datetime, tz: tzinfo) -> bool:
    return any(r.version_changed for r in _in_month(records, now, tz))


def _item_changed_in_month(
    item: str, records: Iterable[ChangeRecord], now: datetime, tz: tzinfo
) -> bool:
    return any(item in r.items_changed for r in _in_month(records, now, tz))


def _check_value(catalog: Catalog, edition: str, item: str, value: ItemValue) -> None:
    """R8: an item not offered for the edition, or a value out of its range."""
    if item not in catalog.items:
        raise Refused(f"unknown item {item!r}", rule="R8")
    offer = catalog.offer(item, edition)
    name = catalog.edition(edition).name
    if not offer.offered:
        raise Refused(f"{item} is not offered on {name}", rule="R8")
    if not offer.allowed(value):
        raise Refused(
            f"{item}={_show(value)} is out of range on {name} (allowed: "
            f"{offer.describe_allowed()})",
            rule="R8",
        )


def carry_items(
    catalog: Catalog, before: Mapping[str, ItemValue], edition: str, named: Mapping[str, ItemValue]
) -> dict[str, ItemValue]:
    """R4a: items across a version change; named ones take the requested value."""
    out: dict[str, ItemValue] = dict(named)
    name = catalog.edition(edition).name
    for key in ITEM_KEYS:
        if key in named:
            continue
        offer = catalog.offer(key, edition)
        value = before[key]
        if not offer.offered:
            out[key] = offer.free  # not sold here (Trial, AV rooms on Flagship): ends
        elif offer.allowed(value):
            out[key] = value
        elif isinstance(value, bool) or isinstance(offer.free, bool) or value < offer.free:
            out[key] = offer.free
        else:
            raise Refused(
                f"{key}={value} is above what {name} allows ({offer.describe_allowed()}); "
                f"choose a value for {key} with the change",
                rule="R8",
            )
    return out


def _show(v: ItemValue) -> str:
    return ("on" if v else "off") if isinstance(v, bool) else str(v)


def decide(
    op: Operation,
    app_name: str,
    current: AppPlan,
    month_records: Iterable[ChangeRecord],
    now: datetime,
    tz: tzinfo,
    catalog: Catalog,
) -> Decision:
    """Decide one lifecycle operation at `now`; raise Refused (nothing changes) if not allowed."""
    if current.status == "disabled":
        raise Refused("the app is disabled; no operation can change it", rule="R6",
                      code=APP_DISABLED)
    records = list(month_records)
    edition_now = catalog.edition(current.edition)

    if isinstance(op, Disable):
        if op.confirm != app_name:
            raise Refused(
                f"to disable, confirm with the app's name exactly ({app_name!r})", rule="R6"
            )
        after = AppPlan(status="disabled", edition=current.edition, items=current.items)
        return Decision("disable", current, after, False, frozenset())

    if isinstance(op, Upgrade):
        if edition_now.postpaid:
            raise Refused(
                f"upgrade is offered only on Trial; the app is on {edition_now.name}: "
                "use change configuration",
                rule="R1",
            )
        target = catalog.editions.get(op.edition.lower())
        if target is None or not target.postpaid:
            raise Refused(f"upgrade goes to a postpaid edition, not {op.edition!r}", rule="R1")
        operation: Literal["upgrade", "configure", "downgrade"] = "upgrade"
        new_edition = target.key
    else:
        if not edition_now.postpaid:
            raise Refused(
                "change configuration is offered only on a postpaid edition; "
                "a Trial app upgrades",
                rule="R2",
            )
        if op.edition is not None and op.edition.lower() not in catalog.editions:
            raise Refused(f"unknown edition {op.edition!r}", rule="R8")
        new_edition = (op.edition or current.edition).lower()
        operation = "configure" if catalog.edition(new_edition).postpaid else "downgrade"

    for key, value in op.items.items():
        _check_value(catalog, new_edition, key, value)

    version_changed = new_edition != current.edition
    if version_changed:
        items = carry_items(catalog, current.items, new_edition, op.items)
    else:
        items = {**current.items, **op.items}
    items_changed = frozenset(k for k in op.items if items[k] != current.items[k])
    after = AppPlan(status="active", edition=new_edition, items=items)

    if not version_changed and not items_changed:
        raise Refused("the request changes nothing", rule="R8")

    # R4: once a month, for the version and for each item.
    already_version = version_changed_in_month(records, now, tz)
    if version_changed and already_version:
        raise Refused(
            f"the service version was already changed this month; it may change again from "
            f"{_next_month_text(now, tz)}",
            rule="R4",
        )
    if not (version_changed or already_version):
        for key in sorted(items_changed):
            if _item_changed_in_month(key, records, now, tz):
                raise Refused(
                    f"{key} was already changed this month; it may change again from "
                    f"{_next_month_text(now, tz)}",
                    rule="R4",
                )
    return Decision(operation, current, after, version_changed, items_changed)


def _next_month_text(now: datetime, tz: tzinfo) -> str:
    return month_bounds(now, tz)[1].astimezone(tz).date().isoformat()


def changeable(
    current: AppPlan,
    month_records: Iterable[ChangeRecord],
    now: datetime,
    tz: tzinfo,
    catalog: Catalog,
) -> tuple[dict[str, bool], dict[str, datetime | None]]:
    """What may change now, and from when each thing held back by R4 may change again.

    `next_change_from[k]` is the start of next month when only R4 holds k back, else None.
    """
    records = list(month_records)
    keys = ("service_version", *ITEM_KEYS)
    can = dict.fromkeys(keys, False)
    later: dict[str, datetime | None] = dict.fromkeys(keys, None)
    if current.status == "disabled":
        return can, later
    next_month = month_bounds(now, tz)[1]
    postpaid = catalog.edition(current.edition).postpaid
    version_done = version_changed_in_month(records, now, tz)
    can["service_version"] = not version_done
    if version_done:
        later["service_version"] = next_month
    if not postpaid:
        return can, later
    for key in ITEM_KEYS:
        if not catalog.offer(key, current.edition).offered:
            continue
        if version_done or not _item_changed_in_month(key, records, now, tz):
            can[key] = True
        else:
            later[key] = next_month
    return can, later
