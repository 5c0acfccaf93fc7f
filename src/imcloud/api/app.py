"""The FastAPI application served by `imcloud serve`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from imcloud import catalog as catalog_mod
from imcloud import console
from imcloud.api import v4
from imcloud.billing import Policy
from imcloud.catalog import Catalog
from imcloud.ops import backup, health, metrics
from imcloud.realtime import gateway
from imcloud.realtime.broker import from_url as broker_from_url
from imcloud.realtime.hub import Hub
from imcloud.services import bills, clock, messages, rates, usage
from imcloud.settings import Settings
from imcloud.store.db import Database

log = logging.getLogger("imcloud")


async def _housekeeping(db: Database, catalog: Catalog, settings: Settings) -> None:
    """Work no request triggers: bills once a bill day passes (B6), retention (E5), and
    each day's group counts for usage (§6). Idempotent, so several servers and the CLI
    may all do it."""
    while True:
        try:
            for month in await bills.due_months(db, settings.billing_tz, settings.bill_day):
                result = await bills.run_month(
                    db, month, catalog, settings.billing_tz,
                    bill_day_of_month=settings.bill_day, policy=Policy(settings.proration))
                log.info("bill run %s: %d new bills", result.month, result.new)
            async with db.read() as conn:
                now = await clock.now(conn)
            await usage.snapshot_counts(db, now.astimezone(settings.billing_tz).date())
            await messages.purge_expired(db, now)
        except Exception:  # keep serving; the next pass retries
            metrics.HOUSEKEEPING_FAILURES.inc()
            log.exception("housekeeping failed")
        await asyncio.sleep(settings.bill_check_seconds)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving = await backup.serve_lock(settings.database_url)  # restore waits for it
        app.state.db = Database(settings.database_url)
        app.state.settings = settings
        app.state.catalog = catalog_mod.load()
        if settings.net_new_groups_per_day is not None:  # 0 = no limit
            app.state.catalog = app.state.catalog.with_limit(
                "net_new_groups_per_day", settings.net_new_groups_per_day or None)
        app.state.rates = rates.from_settings(settings)
        app.state.hub = Hub(app.state.db, broker_from_url(settings.broker_url))
        app.state.readiness = health.Watch()
        await app.state.hub.start(settings.billing_tz)
        metrics.watch(app.state.hub)
        biller = asyncio.create_task(_housekeeping(app.state.db, app.state.catalog, settings))
        try:
            yield
        finally:
            biller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await biller
            metrics.unwatch(app.state.hub)
            await app.state.hub.stop()
            await app.state.rates.close()
            await app.state.db.dispose()
            if serving is not None:
                serving.close()

    app = FastAPI(title="imcloud", version="0.1.0", lifespan=lifespan)
    v4.mount(app)
    console.mount(app)
    app.include_router(gateway.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description="imcloud: v4 REST API (Tencent Cloud IM "
                                             "compatible), console API, operations.")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(v4.schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (it checks nothing else)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: 200 when the database and the broker answer; 503 naming what failed."""
        state = request.app.state
        result = await health.check(state.db, state.hub.broker)
        state.readiness.saw(result)
        return JSONResponse(result.body(), status_code=200 if result.ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics_endpoint() -> Response:
        """Prometheus metrics of this node (docs/operations.md lists them)."""
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    return app
