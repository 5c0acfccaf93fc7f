"""Server-side SVG charts for the usage page: one bar per day, the plan's limit as a
dashed step line where it is finite. No JavaScript and no chart library: the page
stays light, the charts print, and the numbers are in the markup."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup

W, H = 720, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 64, 16, 30


@dataclass(frozen=True)
class Day:
    day: date
    value: int
    limit: int | None  # the plan's limit in force that day; None = unlimited
    future: bool = False


def nice_max(top: float) -> tuple[int, int]:
    """A round axis maximum at or above `top`, and its tick step (1, 2 or 5 × 10^k)."""
    if top <= 0:
        return 4, 1
    raw = top / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(1, int(step))
    return int(math.ceil(top / step) * step), step


def _fmt(n: int) -> str:
    return f"{n:,}"


def bar_chart(chart_id: str, title: str, days: Sequence[Day], color: str) -> Markup:
    n = max(1, len(days))
    finite = [d.limit for d in days if d.limit is not None]
    top = max([d.value for d in days] + finite + [1])
    ymax, step = nice_max(top * 1.08 if finite and top in finite else top)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    band = pw / n

    def y(v: float) -> float:
        return TOP + ph - (v / ymax) * ph

    parts: list[str] = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    # grid and y axis
    for v in range(0, ymax + 1, step):
        yy = y(v)
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" '
                     f'stroke="#e5e8ef" stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#6b7385">{_fmt(v)}</text>')
    # bars
    for i, d in enumerate(days):
        x = LEFT + i * band + band * 0.18
        bw = band * 0.64
        label = f"{d.day.isoformat()}: {_fmt(d.value)}"
        if d.limit is not None:
            label += f" (limit {_fmt(d.limit)})"
        if d.value > 0:
            yy = y(d.value)
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{yy:.1f}" width="{bw:.1f}" '
                         f'height="{TOP + ph - yy:.1f}" rx="2" fill="{color}" '
                         f'data-date="{d.day.isoformat()}" data-value="{d.value}">'
                         f'<title>{escape(label)}</title></rect>')
        else:
            parts.append(f'<rect class="bar empty" x="{x:.1f}" y="{TOP + ph - 1:.1f}" '
                         f'width="{bw:.1f}" height="1" '
                         f'fill="{"#eef0f4" if d.future else "#cfd5e1"}" '
                         f'data-date="{d.day.isoformat()}" data-value="0">'
                         f'<title>{escape(label)}</title></rect>')
        if d.day.day == 1 or d.day.day % 5 == 0:
            parts.append(f'<text x="{LEFT + (i + 0.5) * band:.1f}" y="{H - 10}" '
                         f'text-anchor="middle" font-size="11" fill="#6b7385">'
                         f'{d.day.day}</text>')
    # the limit: a dashed step line over the days it is finite
    segments: list[str] = []
    last: tuple[float, int] | None = None
    for i, d in enumerate(days):
        if d.limit is None:
            continue
        x0, x1, yy = LEFT + i * band, LEFT + (i + 1) * band, y(d.limit)
        if last is not None and last[1] == i - 1:
            segments.append(f"L{x0:.1f},{yy:.1f} L{x1:.1f},{yy:.1f}")
        else:
            segments.append(f"M{x0:.1f},{yy:.1f} L{x1:.1f},{yy:.1f}")
        last = (yy, i)
    if segments:
        parts.append(f'<path class="limit" d="{" ".join(segments)}" fill="none" '
                     f'stroke="#e54545" stroke-width="1.5" stroke-dasharray="6 4"/>')
        assert last is not None
        yy, i = last
        if i == len(days) - 1:  # runs to the end: label in the right margin
            x, y_text, anchor = W - RIGHT + 6, yy + 4, "start"
        else:  # ends inside the month: label just above where it ends
            x, y_text, anchor = LEFT + (i + 1) * band, yy - 6, "end"
        limit = days[i].limit
        assert limit is not None
        parts.append(f'<text class="limit-label" x="{x:.1f}" y="{y_text:.1f}" '
                     f'text-anchor="{anchor}" font-size="11" fill="#e54545">'
                     f'limit {_fmt(limit)}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{TOP + ph}" y2="{TOP + ph}" '
                 f'stroke="#9aa3b5" stroke-width="1"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
