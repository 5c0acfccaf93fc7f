"""What an IM call needs to know about its app, read inside the call's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import plans
from imcloud.catalog import Catalog, Edition, Limit
from imcloud.errors import Code, refuse
from imcloud.services import apps
from imcloud.services.apps import App


@dataclass(frozen=True)
class Tenant:
    app: App
    edition: Edition
    limits: dict[str, Limit]
    now: datetime
    today: date  # in the billing time zone: usage days and "per day" limits
    catalog: Catalog
    tz: tzinfo

    @property
    def sdkappid(self) -> int:
        return self.app.sdkappid


async def load(conn: AsyncConnection, sdkappid: int, catalog: Catalog, tz: tzinfo) -> Tenant:
    """The app with its limits in force now; a disabled app stops here (R6, 60016)."""
    app, now = await apps.get_at(conn, sdkappid)
    return of(app, now, catalog, tz)


def of(app: App, now: datetime, catalog: Catalog, tz: tzinfo) -> Tenant:
    if app.plan.status == "disabled":
        raise refuse(Code.APP_DISABLED, "the app is disabled", rule="R6")
    return Tenant(
        app=app,
        edition=catalog.edition(app.plan.edition),
        limits=plans.effective_limits(app.plan, catalog),
        now=now,
        today=now.astimezone(tz).date(),
        catalog=catalog,
        tz=tz,
    )
