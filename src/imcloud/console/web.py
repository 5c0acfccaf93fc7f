"""Rendering: the Jinja2 environment, filters, and the static files' cache-busting URLs."""

from __future__ import annotations

import hashlib
from datetime import datetime, tzinfo
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


@cache
def static_version(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def static(name: str) -> str:
    return f"/console/static/{name}?v={static_version(name)}"


def money(amount: Decimal | str | None, currency: str = "USD") -> str:
    if amount is None:
        return ""
    value = Decimal(str(amount))
    sign = "-" if value < 0 else ""
    text = f"{abs(value):,.2f}"
    return f"{sign}${text}" if currency == "USD" else f"{sign}{text} {currency}"


def when(t: datetime | str | None, tz: tzinfo | None = None) -> str:
    """'2019-02-10 00:00' in the billing time zone."""
    if t is None:
        return ""
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    if tz is not None:
        t = t.astimezone(tz)
    return t.strftime("%Y-%m-%d %H:%M")


def number(n: int | None) -> str:
    return "Unlimited" if n is None else f"{n:,}"


env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals.update(static=static, money=money)
env.filters.update(money=money, when=when, number=number)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(env.get_template(name).render(**context), status_code=status)


def fragment(name: str, **context: Any) -> str:
    return env.get_template(name).render(**context)
