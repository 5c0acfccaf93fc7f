"""What the console's pages and its JSON API share: the request context, the owner check,
and the lifecycle operations and previews — each a call into the services, which decide
every rule (the console decides none)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Literal

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from imcloud import events, plans
from imcloud.billing import Policy
from imcloud.catalog import Catalog, ItemValue
from imcloud.errors import NotFound, Refused
from imcloud.plans import AppPlan, Configure, Disable, Operation, Upgrade
from imcloud.realtime.hub import Hub
from imcloud.services import apps, bills, clock
from imcloud.services.apps import App
from imcloud.services.console_auth import Account
from imcloud.settings import Settings
from imcloud.store.db import Database

Kind = Literal["auto", "upgrade", "configure", "downgrade", "disable"]


@dataclass(frozen=True)
class Ctx:
    db: Database
    catalog: Catalog
    settings: Settings
    hub: Hub

    @property
    def tz(self) -> tzinfo:
        return self.settings.billing_tz

    @property
    def policy(self) -> Policy:
        return Policy(self.settings.proration)


def ctx(request: Request) -> Ctx:
    s = request.app.state
    return Ctx(s.db, s.catalog, s.settings, s.hub)


def actor(account: Account) -> str:
    return f"console:{account.username}"


async def owned(conn: AsyncConnection, sdkappid: int, account: Account) -> App:
    """The app, if this account owns it. Someone else's app is as absent as one that
    does not exist (404, never 403: existence is not leaked)."""
    try:
        app = await apps.get(conn, sdkappid)
    except NotFound:
        app = None
    if app is None or app.owner_id != account.id:
        raise NotFound(f"no app with SDKAppID {sdkappid}")
    return app


@dataclass(frozen=True)
class PlanRequest:
    """A lifecycle operation as the console received it (JSON body or dialog form)."""

    kind: Kind
    edition: str | None = None
    items: Mapping[str, ItemValue] = field(default_factory=dict)
    confirm: str | None = None


def operation(req: PlanRequest, app: App, catalog: Catalog) -> Operation:
    """The plans operation for a request; `auto` (previews) reads like `imcloud app
    preview`: an upgrade on Trial, a change of configuration on a postpaid edition."""
    kind = req.kind
    if kind == "auto":
        kind = "configure" if catalog.edition(app.plan.edition).postpaid else "upgrade"
    if kind == "disable":
        return Disable(app.name if req.confirm is None else req.confirm)
    if kind == "downgrade":
        return Configure("trial", {})
    if kind == "upgrade":
        if not req.edition or req.edition == "trial":
            raise Refused("an upgrade goes to an edition: pro or flagship", rule="R1")
        return Upgrade(req.edition, dict(req.items))
    return Configure(req.edition, dict(req.items))


async def apply(c: Ctx, account: Account, sdkappid: int, req: PlanRequest) -> dict[str, Any]:
    """Run one lifecycle operation for the account; return the app's view (SPEC §10).
    Other nodes hear of it once it has committed (new limits, a disabled app's sockets
    closed: R6)."""
    with events.collecting() as emitted:
        async with c.db.write() as conn:
            app = await owned(conn, sdkappid, account)
            changed, _ = await apps.apply(conn, sdkappid, operation(req, app, c.catalog),
                                          c.catalog, c.tz, actor=actor(account))
            view = await apps.view(conn, changed, c.catalog, c.tz)
    if emitted:
        await c.hub.publish(emitted)
    return view


@dataclass(frozen=True)
class Preview:
    costs: dict[str, Any]  # the B7 JSON of `imcloud app preview`
    before: AppPlan
    after: AppPlan


async def preview(c: Ctx, account: Account, sdkappid: int, req: PlanRequest) -> Preview:
    """B7 for an operation, with the plan it would lead to; Refused as the real
    operation would be."""
    async with c.db.read() as conn:
        app = await owned(conn, sdkappid, account)
        op = operation(req, app, c.catalog)
        now = await clock.now(conn)
        records = await apps.month_records(conn, sdkappid, now, c.tz)
        decision = plans.decide(op, app.name, app.plan, records, now, c.tz, c.catalog)
        costs = await bills.preview(conn, sdkappid, op, c.catalog, c.tz, c.policy)
    return Preview(costs, decision.before, decision.after)
