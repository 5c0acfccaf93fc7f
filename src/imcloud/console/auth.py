"""Who is signed in, and whether a write really comes from the console.

- The session cookie (`imcloud_session`) holds a random token: HttpOnly, SameSite=Lax,
  Path=/console, Secure when the request came over HTTPS (directly or, behind a proxy,
  with `X-Forwarded-Proto: https`). The database keeps only its hash
  (services.console_auth).
- Every state-changing request carries a CSRF token: forms in a hidden `csrf_token`
  field, the JSON API in an `X-CSRF-Token` header. Signed-in forms use the session's
  token; the two forms shown before sign-in (login, first run) use a double-submit
  token from a second cookie (`imcloud_csrf`, SameSite=Strict).
- A request without a valid token is refused with 403 before anything is read.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qsl

from fastapi import Request, Response

from imcloud.services import console_auth
from imcloud.services.console_auth import Opened, Session
from imcloud.store.db import Database

SESSION_COOKIE = "imcloud_session"
CSRF_COOKIE = "imcloud_csrf"
COOKIE_PATH = "/console"
MAX_FORM_BYTES = 64 * 1024


class SignInRequired(Exception):
    """No signed-in session: a page redirects to sign-in, the API answers 401."""

    def __init__(self, next_path: str = "/console"):
        self.next_path = next_path


class CsrfError(Exception):
    """The request's CSRF token is missing or wrong."""


class FormTooLarge(Exception):
    pass


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


async def current(request: Request) -> Session | None:
    """The signed-in session of this request (cached on the request)."""
    if "console_session" in request.scope:
        cached: Session | None = request.scope["console_session"]
        return cached
    db: Database = request.app.state.db
    async with db.read() as conn:
        s = await console_auth.session(conn, request.cookies.get(SESSION_COOKIE))
    request.scope["console_session"] = s
    return s


def set_session_cookie(response: Response, request: Request, opened: Opened) -> None:
    response.set_cookie(
        SESSION_COOKIE, opened.token, max_age=console_auth.SESSION_HOURS * 3600,
        path=COOKIE_PATH, httponly=True, samesite="lax", secure=is_https(request))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax",
                           secure=is_https(request))


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


async def form(request: Request) -> dict[str, str]:
    """A URL-encoded form body (the console's forms post nothing else); last value wins."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise FormTooLarge
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def check_form_csrf(session: Session, data: dict[str, str]) -> None:
    if not same(data.get("csrf_token"), session.csrf_token):
        raise CsrfError


def check_header_csrf(request: Request, session: Session) -> None:
    if not same(request.headers.get("x-csrf-token"), session.csrf_token):
        raise CsrfError


# ------------------------------------------------------------------ before sign-in


def anonymous_token(request: Request) -> str:
    """The double-submit token for the login and first-run forms."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def set_anonymous_cookie(response: Response, request: Request, token: str) -> None:
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, path=COOKIE_PATH, httponly=True,
                            samesite="strict", secure=is_https(request))


def check_anonymous_csrf(request: Request, data: dict[str, str]) -> None:
    if not same(data.get("csrf_token"), request.cookies.get(CSRF_COOKIE)):
        raise CsrfError


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path on this site, nothing else."""
    if (target and target.startswith("/console") and not target.startswith("//")
            and "\\" not in target and "\n" not in target and "\r" not in target):
        return target
    return "/console"
