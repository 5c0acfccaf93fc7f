"""Time: parsing CLI times, calendar months in the billing time zone, and the clock.

Every plan, billing, usage and retention rule reads `now` from one clock (SPEC §10):
the real one, or a simulated one stored in the database that only moves forward.
UserSig expiry is the exception and always uses real time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str, tz: tzinfo) -> datetime:
    """ISO 8601; a date alone means 00:00; no zone means the billing time zone."""
    text = text.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            t = datetime.combine(d, time(0, 0))
        else:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"not an ISO 8601 time: {text!r}") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.astimezone(UTC)


def month_of(t: datetime, tz: tzinfo) -> tuple[int, int]:
    local = t.astimezone(tz)
    return local.year, local.month


def month_start(year: int, month: int, tz: tzinfo) -> datetime:
    return datetime(year, month, 1, tzinfo=tz).astimezone(UTC)


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_bounds(t: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """The half-open calendar month [start, end) containing t."""
    y, m = month_of(t, tz)
    return month_start(y, m, tz), month_start(*next_month(y, m), tz)


def parse_month(text: str) -> tuple[int, int]:
    try:
        y, m = text.split("-")
        year, month = int(y), int(m)
    except ValueError as e:
        raise ValueError(f"not a month YYYY-MM: {text!r}") from e
    if not (1 <= month <= 12 and 1970 <= year <= 9999 and len(y) == 4 and len(m) == 2):
        raise ValueError(f"not a month YYYY-MM: {text!r}")
    return year, month


def iso(t: datetime, tz: tzinfo) -> str:
    return t.astimezone(tz).isoformat()
