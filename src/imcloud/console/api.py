"""The console's JSON API under /console/api/ (SPEC §10): every operation of the CLI that
belongs to a console account, authenticated by the console session.

Shapes are the CLI's `--json` shapes. Writes need the session's CSRF token in an
`X-CSRF-Token` header (`POST /console/api/login` returns it, as does
`GET /console/api/session`). Errors are `{"error": {"code", "rule", "message"}}`:
401 not signed in, 403 bad CSRF token or not an admin, 404 no such app (or someone
else's: existence is never leaked) or no such bill, 409 refused by a rule, 422 bad
input, 429 sign-in throttled.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from imcloud.catalog import ItemValue
from imcloud.clock import iso, month_of, parse_month, parse_time
from imcloud.console import auth, ops
from imcloud.console.ops import PlanRequest
from imcloud.errors import Refused
from imcloud.services import apps, bills, clock, console_auth, filters, usage
from imcloud.services.console_auth import Session, Throttled

log = logging.getLogger("imcloud.console")


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, rule: str | None = None,
                 code: int | None = None, headers: dict[str, str] | None = None):
        self.status = status
        self.body = {"error": {"code": code, "rule": rule, "message": message}}
        self.headers = headers


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body, status_code=e.status, headers=e.headers)


# ------------------------------------------------------------------ models


class ErrorDetail(BaseModel):
    code: int | None
    rule: str | None
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Items(BaseModel):
    unlimited_av_rooms: bool
    content_filtering: bool
    group_member_limit: int
    groups_per_user: int
    history_days: int


class Limits(BaseModel):
    """Effective limits; null = unlimited (`dau` on Pro/Flagship: not capped, billed)."""

    accounts: int | None
    dau: int | None
    groups_per_user: int | None
    group_members: int | None
    groups: int | None
    av_rooms: int | None
    history_days: int | None


class AppView(BaseModel):
    sdkappid: int
    name: str
    admin_identifier: str
    created_at: str
    status: Literal["active", "disabled"]
    service_version: Literal["Trial", "Pro", "Flagship"]
    label: str
    items: Items
    limits: Limits
    changeable: dict[str, bool]
    next_change_from: dict[str, str | None]


class AppCreated(AppView):
    secret_key: str


class SecretKey(BaseModel):
    sdkappid: int
    secret_key: str


class NewApp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)


class ItemChoice(BaseModel):
    """Value-added items to set (omitted = not named: R4a decides across a version
    change)."""

    model_config = ConfigDict(extra="forbid")
    unlimited_av_rooms: StrictBool | None = None
    content_filtering: StrictBool | None = None
    group_member_limit: StrictInt | None = Field(default=None, ge=1)
    groups_per_user: StrictInt | None = Field(default=None, ge=1)
    history_days: StrictInt | None = Field(default=None, ge=1)

    def items(self) -> dict[str, ItemValue]:
        return {k: v for k, v in self.model_dump(
            include={"unlimited_av_rooms", "content_filtering", "group_member_limit",
                     "groups_per_user", "history_days"}).items() if v is not None}


class UpgradeBody(ItemChoice):
    edition: Literal["pro", "flagship"]


class ConfigureBody(ItemChoice):
    edition: Literal["trial", "pro", "flagship"] | None = None


class DisableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: str = Field(description="The app's name, exactly (R6).")


class PreviewBody(ItemChoice):
    """What `imcloud app preview` takes: without `operation`, an upgrade on Trial and a
    change of configuration on a postpaid edition."""

    operation: Literal["upgrade", "configure", "downgrade", "disable"] | None = None
    edition: Literal["trial", "pro", "flagship"] | None = None


class BillLine(BaseModel):
    item: str
    level: str
    description: str
    period_start: str
    period_end: str
    quantity: str
    unit_price: str
    amount: str


class Preview(BaseModel):
    this_month: str
    monthly_from_next_month: str
    lines: list[BillLine]


class BillSummary(BaseModel):
    month: str
    number: str
    total: str


class Bill(BaseModel):
    sdkappid: int
    month: str
    number: str
    issued_at: str
    lines: list[BillLine]
    total: str


class UsageDay(BaseModel):
    date: str
    dau: int
    groups: int
    av_rooms: int


class Usage(BaseModel):
    sdkappid: int
    month: str
    days: list[UsageDay]


class PlanSnapshot(BaseModel):
    status: Literal["active", "disabled"]
    edition: str
    items: Items


class HistoryEntry(BaseModel):
    seq: int
    at: str
    actor: str
    operation: str
    before: PlanSnapshot | None
    after: PlanSnapshot
    version_changed: bool
    items_changed: list[str]


class FilterWords(BaseModel):
    sdkappid: int
    words: list[str]


class WordsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    words: list[str] = Field(min_length=1, max_length=1000)


class Clock(BaseModel):
    now: str
    simulated: bool


class ClockSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    now: str = Field(description="ISO 8601 time or date; no zone = billing time zone")


class BillRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    month: str | None = Field(default=None, description="YYYY-MM (default: all due)")


class BillRun(BaseModel):
    month: str
    bills: int
    new: int


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class SessionInfo(BaseModel):
    username: str
    is_admin: bool
    csrf_token: str
    expires_at: str


# ------------------------------------------------------------------ dependencies


async def signed_in(request: Request) -> Session:
    s = await auth.current(request)
    if s is None:
        raise ApiError(401, "sign in first: POST /console/api/login")
    return s


async def writer(request: Request, s: Annotated[Session, Depends(signed_in)]) -> Session:
    try:
        auth.check_header_csrf(request, s)
    except auth.CsrfError:
        raise ApiError(403, "missing or wrong X-CSRF-Token header") from None
    return s


async def admin(s: Annotated[Session, Depends(writer)]) -> Session:
    if not s.account.is_admin:
        raise ApiError(403, "only a console admin may do this")
    return s


Reader = Annotated[Session, Depends(signed_in)]
Writer = Annotated[Session, Depends(writer)]
Admin = Annotated[Session, Depends(admin)]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in ((401, "Not signed in"), (403, "Bad CSRF token, or not allowed"),
                         (404, "No such app (or not yours), or no such bill"),
                         (409, "Refused by a rule (R1–R8, B6, E4)"),
                         (422, "Invalid input"))
}

router = APIRouter(prefix="/console/api", tags=["console"], responses=ERRORS)


def _session_info(s: Session, request: Request) -> dict[str, Any]:
    return {"username": s.account.username, "is_admin": s.account.is_admin,
            "csrf_token": s.csrf_token,
            "expires_at": iso(s.expires_at, ops.ctx(request).tz)}


# ------------------------------------------------------------------ session


@router.post("/login", response_model=SessionInfo,
             responses={429: {"model": ErrorBody, "description": "Sign-in throttled"}})
async def login(body: LoginBody, request: Request, response: Response) -> dict[str, Any]:
    """Sign in; the session cookie is set and the CSRF token for writes returned.
    (Only a JSON body is accepted, which a cross-site form cannot send.)"""
    try:
        opened = await console_auth.login(ops.ctx(request).db, body.username, body.password)
    except Throttled as e:
        log.warning("console sign-in throttled for %r", body.username[:64])
        raise ApiError(429, e.message, headers={"Retry-After": str(e.retry_after)}) from None
    except Refused as e:
        log.warning("console sign-in failed for %r", body.username[:64])
        raise ApiError(401, e.message) from None
    auth.set_session_cookie(response, request, opened)
    return _session_info(opened.session, request)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request, s: Writer) -> Response:
    async with ops.ctx(request).db.write() as conn:
        await console_auth.close_session(conn, request.cookies.get(auth.SESSION_COOKIE))
    response = Response(status_code=204)
    auth.clear_session_cookie(response, request)
    return response


@router.get("/session", response_model=SessionInfo)
async def session_info(request: Request, s: Reader) -> dict[str, Any]:
    """Who is signed in, and the CSRF token for writes."""
    return _session_info(s, request)


# ------------------------------------------------------------------ clock, bill runs


@router.get("/clock", response_model=Clock)
async def clock_show(request: Request, s: Reader) -> dict[str, Any]:
    """`imcloud clock show`."""
    c = ops.ctx(request)
    async with c.db.read() as conn:
        return {"now": iso(await clock.now(conn), c.tz),
                "simulated": await clock.is_simulated(conn)}


@router.post("/clock", response_model=Clock)
async def clock_set(body: ClockSet, request: Request, s: Admin) -> dict[str, Any]:
    """`imcloud clock set T` (admins; simulated clocks only, never backwards)."""
    c = ops.ctx(request)
    try:
        t = parse_time(body.now, c.tz)
    except ValueError as e:
        raise ApiError(422, str(e)) from None
    async with c.db.write() as conn:
        await clock.set_time(conn, t)
        return {"now": iso(await clock.now(conn), c.tz), "simulated": True}


@router.post("/bill-runs", response_model=list[BillRun])
async def bill_run(request: Request, s: Admin,
                   body: Annotated[BillRunBody | None, Body()] = None) -> list[dict[str, Any]]:
    """`imcloud bill run [--month M]` (admins): issue every bill due (B6)."""
    c = ops.ctx(request)
    months = ([_month(body.month)] if body and body.month
              else await bills.due_months(c.db, c.tz, c.settings.bill_day))
    out = []
    for m in months:
        r = await bills.run_month(c.db, m, c.catalog, c.tz,
                                  bill_day_of_month=c.settings.bill_day, policy=c.policy)
        out.append({"month": r.month, "bills": r.bills_issued, "new": r.new})
    return out


def _month(text: str) -> tuple[int, int]:
    try:
        return parse_month(text)
    except ValueError as e:
        raise ApiError(422, str(e)) from None


# ------------------------------------------------------------------ apps


@router.get("/apps", response_model=list[AppView])
async def app_list(request: Request, s: Reader) -> list[dict[str, Any]]:
    """`imcloud app list`: this account's apps."""
    c = ops.ctx(request)
    async with c.db.read() as conn:
        return [await apps.view(conn, a, c.catalog, c.tz)
                for a in await apps.list_all(conn, s.account.id)]


def _app_link(path: str, method: str, why: str, **extra: Any) -> dict[str, Any]:
    pointer = ("/console/api/apps/{sdkappid}" + path).replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method}", "description": why,
            "parameters": {"sdkappid": "$response.body#/sdkappid"}, **extra}


# OpenAPI links from a new app to what can be done with it (for readers and for stateful
# fuzzing, which follows them).
NEW_APP_LINKS = {
    "Show": _app_link("", "get", "the new app"),
    "Secret": _app_link("/secret", "get", "its secret key"),
    "History": _app_link("/history", "get", "its plan history"),
    "Upgrade": _app_link("/upgrade", "post", "upgrade it"),
    "Configure": _app_link("/configure", "post", "change its configuration"),
    "Preview": _app_link("/preview", "post", "the cost of a change"),
    "Bills": _app_link("/bills", "get", "its bills"),
    "Usage": _app_link("/usage", "get", "its usage"),
    "FilterWords": _app_link("/filter-words", "post", "add filter words"),
    "Disable": _app_link("/disable", "post", "disable it, confirming with its name",
                         requestBody={"confirm": "$response.body#/name"}),
}


@router.post("/apps", response_model=AppCreated, status_code=201,
             responses={201: {"description": "The new app", "links": NEW_APP_LINKS}})
async def app_create(body: NewApp, request: Request, s: Writer) -> dict[str, Any]:
    """`imcloud app create NAME`: a new Trial app owned by this account (R8: 300 at
    most). The only answer that carries the secret key, besides `/secret`."""
    c = ops.ctx(request)
    async with c.db.write() as conn:
        app = await apps.create(conn, body.name, c.catalog, owner=s.account.username,
                                actor=ops.actor(s.account))
        return await apps.view(conn, app, c.catalog, c.tz, with_secret=True)


@router.get("/apps/{sdkappid}", response_model=AppView)
async def app_show(sdkappid: int, request: Request, s: Reader) -> dict[str, Any]:
    """`imcloud app show ID`."""
    c = ops.ctx(request)
    async with c.db.read() as conn:
        app = await ops.owned(conn, sdkappid, s.account)
        return await apps.view(conn, app, c.catalog, c.tz)


@router.get("/apps/{sdkappid}/secret", response_model=SecretKey)
async def app_secret(sdkappid: int, request: Request, s: Reader) -> dict[str, Any]:
    """The app's secret key (for signing UserSigs); the console's "Show key"."""
    c = ops.ctx(request)
    async with c.db.read() as conn:
        app = await ops.owned(conn, sdkappid, s.account)
    return {"sdkappid": app.sdkappid, "secret_key": app.secret_key}


@router.get("/apps/{sdkappid}/history", response_model=list[HistoryEntry])
async def app_history(sdkappid: int, request: Request, s: Reader) -> list[dict[str, Any]]:
    """`imcloud app history ID` (R7)."""
    c = ops.ctx(request)
    async with c.db.read() as conn:
        await ops.owned(conn, sdkappid, s.account)
        events = await apps.history(conn, sdkappid)
    return [{"seq": e.seq, "at": iso(e.at, c.tz), "actor": e.actor, "operation": e.operation,
             "before": e.before.to_json() if e.before else None, "after": e.after.to_json(),
             "version_changed": e.version_changed, "items_changed": sorted(e.items_changed)}
            for e in events]


async def _apply(request: Request, s: Session, sdkappid: int,
                 req: PlanRequest) -> dict[str, Any]:
    return await ops.apply(ops.ctx(request), s.account, sdkappid, req)


@router.post("/apps/{sdkappid}/upgrade", response_model=AppView)
async def app_upgrade(sdkappid: int, body: UpgradeBody, request: Request,
                      s: Writer) -> dict[str, Any]:
    """`imcloud app upgrade` (R1): Trial → Pro or Flagship, with items."""
    return await _apply(request, s, sdkappid, PlanRequest("upgrade", body.edition, body.items()))


@router.post("/apps/{sdkappid}/configure", response_model=AppView)
async def app_configure(sdkappid: int, body: ConfigureBody, request: Request,
                        s: Writer) -> dict[str, Any]:
    """`imcloud app configure` (R2, R4, R4a): version and/or items of a postpaid app."""
    return await _apply(request, s, sdkappid,
                        PlanRequest("configure", body.edition, body.items()))


@router.post("/apps/{sdkappid}/downgrade", response_model=AppView)
async def app_downgrade(sdkappid: int, request: Request, s: Writer) -> dict[str, Any]:
    """`imcloud app downgrade` (R3): to Trial; every value-added item ends."""
    return await _apply(request, s, sdkappid, PlanRequest("downgrade"))


@router.post("/apps/{sdkappid}/disable", response_model=AppView)
async def app_disable(sdkappid: int, body: DisableBody, request: Request,
                      s: Writer) -> dict[str, Any]:
    """`imcloud app disable --confirm NAME` (R6): final, at once, on every node."""
    return await _apply(request, s, sdkappid, PlanRequest("disable", confirm=body.confirm))


@router.post("/apps/{sdkappid}/preview", response_model=Preview)
async def app_preview(sdkappid: int, body: PreviewBody, request: Request,
                      s: Writer) -> dict[str, Any]:
    """`imcloud app preview` (B7): what an operation would cost, before making it. A
    preview of an operation the rules refuse is that refusal (409)."""
    req = PlanRequest(body.operation or "auto", body.edition, body.items())
    p = await ops.preview(ops.ctx(request), s.account, sdkappid, req)
    return p.costs


# ------------------------------------------------------------------ bills, usage


@router.get("/apps/{sdkappid}/bills", response_model=list[BillSummary])
async def bill_list(sdkappid: int, request: Request, s: Reader) -> list[dict[str, str]]:
    """`imcloud bill list ID`."""
    c = ops.ctx(request)
    async with c.db.read() as conn:
        await ops.owned(conn, sdkappid, s.account)
        return await bills.list_for(conn, sdkappid)


async def _bill(request: Request, s: Session, sdkappid: int, month: str) -> dict[str, Any]:
    c = ops.ctx(request)
    m = _month(month)
    async with c.db.read() as conn:
        await ops.owned(conn, sdkappid, s.account)
        return await bills.get(conn, sdkappid, m, c.tz)


@router.get("/apps/{sdkappid}/bills/{month}", response_model=Bill)
async def bill_show(sdkappid: int, month: str, request: Request, s: Reader) -> dict[str, Any]:
    """`imcloud bill show ID --month YYYY-MM`."""
    return await _bill(request, s, sdkappid, month)


@router.get("/apps/{sdkappid}/bills/{month}/csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "The bill as CSV"}})
async def bill_csv(sdkappid: int, month: str, request: Request, s: Reader) -> Response:
    """`imcloud bill show ID --month YYYY-MM --csv`, as a download."""
    bill = await _bill(request, s, sdkappid, month)
    return Response(bills.to_csv(bill), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{bill["number"]}.csv"'})


@router.get("/apps/{sdkappid}/usage", response_model=Usage)
async def usage_show(sdkappid: int, request: Request, s: Reader,
                     month: str | None = None) -> dict[str, Any]:
    """`imcloud usage show ID --month YYYY-MM` (default: the clock's month)."""
    c = ops.ctx(request)
    async with c.db.read() as conn:
        await ops.owned(conn, sdkappid, s.account)
        m = _month(month) if month else month_of(await clock.now(conn), c.tz)
        days = await usage.month(conn, sdkappid, *m, c.tz)
    return {"sdkappid": sdkappid, "month": bills.month_key(m), "days": days}


# ------------------------------------------------------------------ filter words


async def _words(request: Request, s: Session, sdkappid: int, change: str,
                 words: list[str]) -> dict[str, Any]:
    c = ops.ctx(request)
    try:
        async with c.db.write() as conn:
            await ops.owned(conn, sdkappid, s.account)
            if change == "add":
                current = await filters.add(conn, sdkappid, words)
            elif change == "remove":
                current = await filters.remove(conn, sdkappid, words)
            else:
                current = await filters.words(conn, sdkappid)
    except ValueError as e:
        raise ApiError(422, str(e), rule="E4") from None
    return {"sdkappid": sdkappid, "words": current}


@router.get("/apps/{sdkappid}/filter-words", response_model=FilterWords)
async def filter_list(sdkappid: int, request: Request, s: Reader) -> dict[str, Any]:
    """`imcloud filter list ID`: the app's own words (the built-in list applies too)."""
    return await _words(request, s, sdkappid, "list", [])


@router.post("/apps/{sdkappid}/filter-words", response_model=FilterWords)
async def filter_add(sdkappid: int, body: WordsBody, request: Request,
                     s: Writer) -> dict[str, Any]:
    """`imcloud filter add ID WORD...` (E4)."""
    return await _words(request, s, sdkappid, "add", body.words)


@router.delete("/apps/{sdkappid}/filter-words", response_model=FilterWords)
async def filter_remove(sdkappid: int, body: WordsBody, request: Request,
                        s: Writer) -> dict[str, Any]:
    """`imcloud filter remove ID WORD...`."""
    return await _words(request, s, sdkappid, "remove", body.words)
