"""The web console (SPEC §10): HTML pages at /console, a JSON API at /console/api.

`mount(app)` adds both, the static files, the error handlers that give each its own
shape (pages: redirects and HTML; API: `{"error": ...}` JSON), and the security
headers of every console response.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imcloud.console import api, auth, routes
from imcloud.console.web import STATIC, render
from imcloud.errors import NotFound, Refused
from imcloud.services import console_auth

log = logging.getLogger("imcloud.console")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the console's security headers (and no-store, except for static files) to
    responses under /console; everything else passes untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/console"):
            await self.app(scope, receive, send)
            return
        static = path.startswith("/console/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/console/api")


async def _page_error(request: Request, status: int, title: str, message: str) -> Response:
    session = await auth.current(request)
    ctx = await routes.page_context(request, session)
    ctx.update(title=title, message=message)
    return render("error.html", status=status, **ctx)


def mount(app: FastAPI) -> None:
    app.include_router(api.router)
    app.include_router(routes.router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(api.ApiError)
    async def api_error(request: Request, e: api.ApiError) -> Response:
        return api.error_response(e)

    @app.exception_handler(auth.SignInRequired)
    async def sign_in(request: Request, e: auth.SignInRequired) -> Response:
        if _is_api(request):
            return api.error_response(api.ApiError(401, "sign in first"))
        async with request.app.state.db.read() as conn:
            first = await console_auth.needs_first_run(conn)
        if first:
            return RedirectResponse("/console/setup", status_code=303)
        return RedirectResponse(f"/console/login?next={quote(e.next_path)}", status_code=303)

    @app.exception_handler(auth.CsrfError)
    async def csrf(request: Request, e: auth.CsrfError) -> Response:
        log.warning("console request without a valid CSRF token: %s %s", request.method,
                    request.url.path)
        if _is_api(request):
            return api.error_response(api.ApiError(403, "missing or wrong CSRF token"))
        return await _page_error(request, 403, "This form has expired",
                                 "The form did not carry a valid security token. Reload "
                                 "the page and try again.")

    @app.exception_handler(auth.FormTooLarge)
    async def too_large(request: Request, e: auth.FormTooLarge) -> Response:
        return Response("form too large", status_code=413)

    @app.exception_handler(Refused)
    async def refused(request: Request, e: Refused) -> Response:
        status = 404 if isinstance(e, NotFound) else 409
        if request.url.path.startswith("/console") and not _is_api(request):
            title = "Not found" if status == 404 else "Refused"
            return await _page_error(request, status, title, e.message)
        return JSONResponse({"error": e.as_dict()}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        """The framework's own refusals (a body it cannot decode, an unknown path or
        method) in the console API's error shape; elsewhere as the framework has them."""
        if not _is_api(request):
            return await http_exception_handler(request, e)
        if e.status_code == 400:  # bytes that are not even text: invalid input, like bad JSON
            return api.error_response(api.ApiError(422, "invalid input: body: not valid JSON"))
        return api.error_response(api.ApiError(e.status_code, str(e.detail),
                                               headers=getattr(e, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        if _is_api(request):
            errors = e.errors()
            first = errors[0] if errors else {"loc": (), "msg": "invalid input"}
            where = ".".join(str(p) for p in first.get("loc", ()))
            message = f"invalid input: {where}: {first.get('msg', '')}".replace(": :", ":")
            return JSONResponse({"error": {"code": None, "rule": None, "message": message}},
                                status_code=422)
        if request.url.path.startswith("/console"):
            return await _page_error(request, 404, "Not found", "There is no such page.")
        return await request_validation_exception_handler(request, e)
