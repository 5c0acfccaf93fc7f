"""The billing engine (SPEC §5, B1–B7): plan history + usage + catalog + month -> bill lines.

Pure: no I/O, no clock. Services load the app's plan timeline and daily usage, call
`bill_lines`, and store what it returns. Previews (B7) call the same `bill_lines` with
the proposed change appended, so a preview can never disagree with the bill it predicts.

Vocabulary: the timeline splits time into *segments* with a constant plan; an item's
*interval* (B1) is a maximal run of segments in which it costs something at one level;
its *chargeable moments* are the parts of its intervals after any B2 grace.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Literal

from imcloud.catalog import ITEM_KEYS, Catalog
from imcloud.clock import month_of, month_start, next_month
from imcloud.plans.model import AppPlan

Timeline = Sequence[tuple[datetime, AppPlan]]

EDITION = "edition"
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def money(amount: Decimal) -> Decimal:
    """Exact money: 2 places, half-up (SPEC B4, B6)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class DailyUsage:
    """One day (in the billing time zone) of an app's metered usage (SPEC §6)."""

    day: date
    dau: int
    groups: int


@dataclass(frozen=True)
class Policy:
    """How a partly used month is charged (B4): whole months, or daily proration."""

    proration: Literal["month", "daily"] = "month"


@dataclass(frozen=True)
class BillLine:
    """One line of a bill; `period_end` is exclusive."""

    item: str
    level: str
    description: str
    period_start: datetime
    period_end: datetime
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass
class Preview:
    """B7: what a change adds to this month's bill, and the monthly fee after it."""

    this_month: Decimal
    monthly_from_next_month: Decimal
    lines: list[BillLine]


@dataclass(frozen=True)
class _Segment:
    start: datetime
    end: datetime
    plan: AppPlan


@dataclass(frozen=True)
class _Piece:
    """Chargeable time of one item at one level and one price."""

    start: datetime
    end: datetime
    level: str
    price: Decimal


@dataclass
class _DayRun:
    """The days a daily-prorated line covers, and its first/last chargeable moment."""

    days: int
    start: datetime
    end: datetime


# ------------------------------------------------------------------ configuration


def _charge(plan: AppPlan, item: str, catalog: Catalog) -> tuple[str, Decimal] | None:
    """(level, monthly price) of `item` in `plan`, or None when it is not charged.

    Only an active postpaid plan costs anything; a value-added item is in the
    configuration only when its value is priced above the edition's free default.
    """
    edition = catalog.edition(plan.edition)
    if plan.status != "active" or not edition.postpaid:
        return None
    if item == EDITION:
        return edition.name, edition.base_fee
    offer = catalog.offer(item, edition.key)
    value = plan.items.get(item, offer.free)
    price = offer.price_of(value) if offer.offered else ZERO
    if price <= 0:
        return None
    return ("on" if value is True else str(value)), price


def _is_postpaid(plan: AppPlan, catalog: Catalog) -> bool:
    return plan.status == "active" and catalog.edition(plan.edition).postpaid


def monthly_fee(plan: AppPlan, catalog: Catalog) -> Decimal:
    """The whole monthly fee of a configuration (0 on Trial or when disabled)."""
    charges = (_charge(plan, item, catalog) for item in (EDITION, *ITEM_KEYS))
    return money(sum((c[1] for c in charges if c is not None), ZERO))


def total(lines: Iterable[BillLine]) -> Decimal:
    return money(sum((line.amount for line in lines), ZERO))


# ------------------------------------------------------------------ time


def _sorted(timeline: Timeline) -> list[tuple[datetime, AppPlan]]:
    return sorted(timeline, key=lambda entry: entry[0])


def _segments(entries: Sequence[tuple[datetime, AppPlan]], horizon: datetime) -> list[_Segment]:
    """Non-empty constant-plan segments up to `horizon` (nothing later matters)."""
    out: list[_Segment] = []
    for i, (start, plan) in enumerate(entries):
        end = min(entries[i + 1][0] if i + 1 < len(entries) else horizon, horizon)
        if start < end:
            out.append(_Segment(start, end, plan))
    return out


def _version_changes(
    entries: Sequence[tuple[datetime, AppPlan]],
) -> list[tuple[datetime, AppPlan, AppPlan]]:
    """(at, before, after) of every edition change; disabling is not one."""
    return [
        (at, before, after)
        for (_, before), (at, after) in pairwise(entries)
        if before.edition != after.edition
    ]


def _postpaid_during(
    segments: Iterable[_Segment], lo: datetime, hi: datetime, catalog: Catalog
) -> bool:
    return any(
        _is_postpaid(s.plan, catalog) and max(s.start, lo) < min(s.end, hi) for s in segments
    )


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=tz).astimezone(UTC)


@functools.lru_cache(maxsize=64)
def _days(year: int, month: int, tz: tzinfo) -> tuple[tuple[date, datetime, datetime], ...]:
    """Each day of the month with its half-open [start, end) in UTC (one bill run asks
    for the same month 100,000 times)."""
    first = date(year, month, 1)
    return tuple(
        (day, _midnight(day, tz), _midnight(day + timedelta(days=1), tz))
        for day in (first + timedelta(days=i)
                    for i in range(calendar.monthrange(year, month)[1])))


# ------------------------------------------------------------------ B1–B3


def _chargeable_start(
    start: datetime,
    changes: Sequence[tuple[datetime, AppPlan, AppPlan]],
    segments: Sequence[_Segment],
    tz: tzinfo,
    catalog: Catalog,
) -> datetime:
    """When an interval starting at `start` begins to cost (B2 grace, else B3)."""
    year, month = month_of(start, tz)
    lo = month_start(year, month, tz)
    earlier = [c for c in changes if lo <= c[0] <= start]
    if not earlier:
        return start  # B3
    _, before, after = earlier[-1]
    from_trial = not catalog.edition(before.edition).postpaid and _is_postpaid(after, catalog)
    if from_trial and _postpaid_during(
        segments, month_start(*_previous_month(year, month), tz), lo, catalog
    ):
        return start  # B2 loophole: postpaid last month, so no free month
    if not from_trial and earlier[-1][0] == lo:
        # The same loophole between postpaid editions (docs/decisions.md): a switch at
        # 00:00 on the 1st leaves the replaced edition nothing to charge this month, so
        # a grace here would make the whole month free, every month.
        return start
    return month_start(*next_month(year, month), tz)


def _pieces(
    item: str,
    segments: Sequence[_Segment],
    changes: Sequence[tuple[datetime, AppPlan, AppPlan]],
    lo: datetime,
    hi: datetime,
    tz: tzinfo,
    catalog: Catalog,
) -> list[_Piece]:
    """The item's chargeable time within [lo, hi), split where its price changes."""
    runs: list[list[tuple[_Segment, str, Decimal]]] = []
    level_before: str | None = None
    # Segments ending before the month can't be charged in it; the one ending exactly
    # at its start stays, so an interval kept across a change at 00:00 keeps its start.
    for seg in (s for s in segments if s.end >= lo):
        charge = _charge(seg.plan, item, catalog)
        if charge is None:
            level_before = None
            continue
        if charge[0] != level_before:  # a new interval (B1); same level keeps it
            runs.append([])
        runs[-1].append((seg, *charge))
        level_before = charge[0]
    pieces = []
    for run in runs:
        if run[-1][0].end <= lo:
            continue
        begin = max(_chargeable_start(run[0][0].start, changes, segments, tz, catalog), lo)
        for seg, level, price in run:
            a, b = max(seg.start, begin), min(seg.end, hi)
            if a < b:
                pieces.append(_Piece(a, b, level, price))
    return pieces


# ------------------------------------------------------------------ B4


def _highest(pieces: Iterable[_Piece]) -> _Piece:
    """The highest-priced piece; on a tie the later one (the level the app moved to)."""
    best: _Piece | None = None
    for p in pieces:
        if best is None or p.price >= best.price:
            best = p
    assert best is not None
    return best


def _description(item: str, level: str, catalog: Catalog) -> str:
    if item == EDITION:
        return f"{level} Edition base fee"
    entry = catalog.items[item]
    return entry.title if entry.kind == "switch" else f"{entry.title}: {level}"


def _month_line(item: str, pieces: Sequence[_Piece], catalog: Catalog) -> BillLine:
    """B4 default: the full monthly price, once, at the highest level charged."""
    best = _highest(pieces)
    price = money(best.price)
    return BillLine(
        item=item,
        level=best.level,
        description=_description(item, best.level, catalog),
        period_start=min(p.start for p in pieces),
        period_end=max(p.end for p in pieces),
        quantity=Decimal(1),
        unit_price=price,
        amount=price,
    )


def _daily_lines(
    item: str,
    pieces: Sequence[_Piece],
    days: Sequence[tuple[date, datetime, datetime]],
    catalog: Catalog,
) -> list[BillLine]:
    """B4 daily: each day at its highest level; one line per (level, price), rounded once."""
    runs: dict[tuple[str, Decimal], _DayRun] = {}
    for _, lo, hi in days:
        today = [
            _Piece(max(p.start, lo), min(p.end, hi), p.level, p.price)
            for p in pieces
            if max(p.start, lo) < min(p.end, hi)
        ]
        if not today:
            continue
        best = _highest(today)
        chosen = [p for p in today if (p.level, p.price) == (best.level, best.price)]
        start, end = min(p.start for p in chosen), max(p.end for p in chosen)
        run = runs.get((best.level, best.price))
        if run is None:
            runs[(best.level, best.price)] = _DayRun(1, start, end)
        else:
            run.days, run.end = run.days + 1, end
    in_month = len(days)
    lines = [
        BillLine(
            item=item,
            level=level,
            description=_description(item, level, catalog),
            period_start=run.start,
            period_end=run.end,
            quantity=Decimal(run.days),
            unit_price=money(price),
            amount=money(price * run.days / in_month),
        )
        for (level, price), run in runs.items()
    ]
    return sorted(lines, key=lambda line: line.period_start)


# ------------------------------------------------------------------ B5


def _overage_lines(
    fee: Sequence[_Piece],
    segments: Sequence[_Segment],
    usage: Iterable[DailyUsage],
    days: Sequence[tuple[date, datetime, datetime]],
    catalog: Catalog,
) -> list[BillLine]:
    """B5: per started unit above the free amount, peak over the chargeable days only."""
    if not fee:
        return []
    fee_start = min(p.start for p in fee)
    segments = [s for s in segments if s.end > fee_start]  # the rest can't overlap
    chargeable = [
        (day, hi)
        for day, lo, hi in days
        if _postpaid_during(segments, max(lo, fee_start), hi, catalog)
    ]
    if not chargeable:
        return []
    dates = {day for day, _ in chargeable}
    rows = [u for u in usage if u.day in dates]
    peaks = {
        "dau": max((u.dau for u in rows), default=0),
        "groups": max((u.groups for u in rows), default=0),
    }
    names = {"dau": ("dau_overage", "DAU"), "groups": ("group_overage", "Group count")}
    lines = []
    for key, peak in peaks.items():
        rule = catalog.overage[key]
        if peak <= rule.free:
            continue
        units = -(-(peak - rule.free) // rule.unit)  # every started unit
        item, label = names[key]
        lines.append(
            BillLine(
                item=item,
                level=str(peak),
                description=f"{label} overage (peak {peak:,})",
                period_start=fee_start,
                period_end=chargeable[-1][1],
                quantity=Decimal(units),
                unit_price=money(rule.price),
                amount=money(rule.price * units),
            )
        )
    return lines


# ------------------------------------------------------------------ public


def bill_lines(
    timeline: Timeline,
    usage: Sequence[DailyUsage],
    catalog: Catalog,
    year: int,
    month: int,
    tz: tzinfo,
    policy: Policy = Policy(),
) -> list[BillLine]:
    """The lines of the bill for `month` (SPEC B1–B5).

    `timeline` is the app's plan history: each (at, plan) is in force from `at` until
    the next entry (the first is the app's creation on Trial); times are aware.
    Lines come in catalog order: edition, the items, then overage.
    """
    lo = month_start(year, month, tz)
    hi = month_start(*next_month(year, month), tz)
    entries = _sorted(timeline)
    segments = _segments(entries, hi)
    changes = _version_changes(entries)
    days = _days(year, month, tz)
    lines: list[BillLine] = []
    fee: list[_Piece] = []
    for item in (EDITION, *ITEM_KEYS):
        pieces = _pieces(item, segments, changes, lo, hi, tz, catalog)
        if item == EDITION:
            fee = pieces
        if not pieces:
            continue
        if policy.proration == "daily":
            lines += _daily_lines(item, pieces, days, catalog)
        else:
            lines.append(_month_line(item, pieces, catalog))
    return lines + _overage_lines(fee, segments, usage, days, catalog)


def billable(timeline: Timeline, year: int, month: int, tz: tzinfo, catalog: Catalog) -> bool:
    """B6: a bill (even of 0.00) is due for every month with an active postpaid moment."""
    hi = month_start(*next_month(year, month), tz)
    segments = _segments(_sorted(timeline), hi)
    return _postpaid_during(segments, month_start(year, month, tz), hi, catalog)


def preview(
    timeline: Timeline,
    proposed: AppPlan,
    at: datetime,
    catalog: Catalog,
    tz: tzinfo,
    policy: Policy = Policy(),
) -> Preview:
    """B7: the current month's bill with the change minus without it, overage excluded
    (no usage is passed), and the whole monthly fee of the proposed configuration."""
    year, month = month_of(at, tz)
    without = bill_lines(timeline, (), catalog, year, month, tz, policy)
    with_change = bill_lines([*timeline, (at, proposed)], (), catalog, year, month, tz, policy)
    return Preview(
        this_month=total(with_change) - total(without),
        monthly_from_next_month=monthly_fee(proposed, catalog),
        lines=with_change,
    )
