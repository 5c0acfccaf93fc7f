"""The FastAPI application served by `imcloud serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from imcloud import catalog as catalog_mod
from imcloud.clock import iso
from imcloud.services import apps, clock
from imcloud.settings import Settings
from imcloud.store.db import Database

_NO_APPS = "<li>No apps yet: <code>imcloud app create NAME</code></li>"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(settings.database_url)
        app.state.settings = settings
        app.state.catalog = catalog_mod.load()
        try:
            yield
        finally:
            await app.state.db.dispose()

    app = FastAPI(title="imcloud", version="0.1.0", lifespan=lifespan)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/console", response_class=HTMLResponse, include_in_schema=False)
    async def console(request: Request) -> HTMLResponse:
        db: Database = request.app.state.db
        cat = request.app.state.catalog
        tz = settings.billing_tz
        async with db.read() as conn:
            now = await clock.now(conn)
            rows = await apps.list_all(conn)
        cards = "".join(
            f"<li><b>{escape(a.name)}</b> — {a.sdkappid} — "
            f"{'Disabled' if a.plan.status == 'disabled' else cat.edition(a.plan.edition).label}"
            "</li>"
            for a in rows
        )
        return HTMLResponse(
            "<!doctype html><html><head><meta charset='utf-8'><title>imcloud console</title>"
            "</head><body><h1>imcloud</h1>"
            f"<p>Clock: {escape(iso(now, tz))}</p>"
            f"<h2>Apps</h2><ul>{cards or _NO_APPS}</ul>"
            "</body></html>"
        )

    return app
