"""The console's HTML pages (SPEC §10): sign-in, app cards, Basic Configuration with the
three Reminder dialogs, bills, usage charts, content-filter words.

Pages read through the services and write through `ops` (the same calls the JSON API
makes). Forms post URL-encoded bodies with a CSRF token; a refused operation re-renders
its page with the dialog open and the rule's message in it (HTTP 200: a refusal is an
answer, and the browser's console stays free of failed-request errors).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from imcloud import plans
from imcloud.catalog import ITEM_KEYS, Catalog, ItemValue
from imcloud.clock import month_of, month_start, next_month, parse_month
from imcloud.console import auth, charts, dialogs, ops
from imcloud.console.ops import Ctx, PlanRequest
from imcloud.console.web import fragment, money, number, render, when
from imcloud.errors import NotFound, Refused
from imcloud.plans import AppPlan
from imcloud.services import accounts, apps, bills, clock, console_auth, filters, usage
from imcloud.services.apps import App, PlanEvent
from imcloud.services.console_auth import Session

router = APIRouter(prefix="/console", include_in_schema=False)

OPERATION_TITLES = {
    "create": "Created",
    "upgrade": "Upgraded",
    "configure": "Changed configuration",
    "downgrade": "Downgraded",
    "disable": "Disabled",
}
DONE = {
    "created": "The app was created on the Trial Edition.",
    "upgrade": "Upgraded: the new edition is in force now.",
    "configure": "The configuration was changed: the new limits are in force now.",
    "downgrade": "Downgraded to the Trial Edition: every value-added item has ended.",
    "disable": "The app is disabled.",
}
LIMIT_TITLES = {
    "accounts": "Accounts (user IDs)",
    "dau": "Daily active users",
    "groups_per_user": "Groups per user",
    "group_members": "Members per group",
    "groups": "Groups (non-AV)",
    "av_rooms": "AV chat rooms",
    "history_days": "Message history (days)",
}


async def signed_in(request: Request) -> Session:
    s = await auth.current(request)
    if s is None:
        raise auth.SignInRequired(request.url.path)
    return s


async def page_context(request: Request, session: Session | None) -> dict[str, Any]:
    c = ops.ctx(request)
    async with c.db.read() as conn:
        now = await clock.now(conn)
        simulated = await clock.is_simulated(conn)
    return {
        "me": session.account if session else None,
        "csrf": session.csrf_token if session else "",
        "clock": {"now": f"{when(now, c.tz)} {c.tz}", "simulated": simulated},
        "now": now,
        "notice": None,
        "error": None,
    }


# ------------------------------------------------------------------ sign-in


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    c = ops.ctx(request)
    async with c.db.read() as conn:
        if await console_auth.needs_first_run(conn):
            return RedirectResponse("/console/setup", status_code=303)
    if await auth.current(request) is not None:
        return RedirectResponse(auth.safe_next(next), status_code=303)
    return await _login_form(request, next, None, "")


async def _login_form(request: Request, next_path: str | None, error: str | None,
                      username: str) -> Response:
    token = auth.anonymous_token(request)
    ctx = await page_context(request, None)
    ctx.update(form_csrf=token, next=auth.safe_next(next_path), error=error,
               username=username)
    response = render("login.html", **ctx)
    auth.set_anonymous_cookie(response, request, token)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    data = await auth.form(request)
    auth.check_anonymous_csrf(request, data)
    username = data.get("username", "")
    try:
        opened = await console_auth.login(ops.ctx(request).db, username,
                                          data.get("password", ""))
    except Refused as e:
        return await _login_form(request, data.get("next"), e.message, username)
    response = RedirectResponse(auth.safe_next(data.get("next")), status_code=303)
    auth.set_session_cookie(response, request, opened)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await signed_in(request)
    auth.check_form_csrf(session, await auth.form(request))
    async with ops.ctx(request).db.write() as conn:
        await console_auth.close_session(conn, request.cookies.get(auth.SESSION_COOKIE))
    response = RedirectResponse("/console/login", status_code=303)
    auth.clear_session_cookie(response, request)
    return response


@router.get("/setup")
async def setup_page(request: Request) -> Response:
    async with ops.ctx(request).db.read() as conn:
        if not await console_auth.needs_first_run(conn):
            return RedirectResponse("/console/login", status_code=303)
    return await _setup_form(request, None)


async def _setup_form(request: Request, error: str | None) -> Response:
    token = auth.anonymous_token(request)
    ctx = await page_context(request, None)
    ctx.update(form_csrf=token, error=error, admin=accounts.FIRST_ADMIN)
    response = render("setup.html", **ctx)
    auth.set_anonymous_cookie(response, request, token)
    return response


@router.post("/setup")
async def setup(request: Request) -> Response:
    data = await auth.form(request)
    auth.check_anonymous_csrf(request, data)
    password = data.get("password", "")
    if password != data.get("confirm", ""):
        return await _setup_form(request, "The two passwords differ.")
    try:
        digest = await console_auth.hash_password(password)
        async with ops.ctx(request).db.write() as conn:
            account = await console_auth.first_run(conn, digest)
            opened = await console_auth.open_session(conn, account)
    except Refused as e:
        if not e.message.startswith("the console is already set up"):
            return await _setup_form(request, _sentence(e.message))
        return RedirectResponse("/console/login", status_code=303)
    response = RedirectResponse("/console", status_code=303)
    auth.set_session_cookie(response, request, opened)
    return response


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


# ------------------------------------------------------------------ app cards


@router.get("")
async def home(request: Request) -> Response:
    return await _cards(request, await signed_in(request), None, "")


async def _cards(request: Request, session: Session, error: str | None,
                 name: str) -> Response:
    c = ops.ctx(request)
    async with c.db.read() as conn:
        views = [await apps.view(conn, a, c.catalog, c.tz)
                 for a in await apps.list_all(conn, session.account.id)]
    ctx = await page_context(request, session)
    trial = plans.effective_limits(plans.initial_plan(c.catalog), c.catalog)
    ctx.update(apps=views, error=error, new_name=name, max_apps=apps.MAX_APPS_PER_ACCOUNT,
               trial_accounts=number(trial["accounts"]), trial_dau=number(trial["dau"]))
    return render("apps.html", **ctx)


@router.post("/apps")
async def create_app(request: Request) -> Response:
    session = await signed_in(request)
    data = await auth.form(request)
    auth.check_form_csrf(session, data)
    c = ops.ctx(request)
    name = data.get("name", "")
    try:
        async with c.db.write() as conn:
            app = await apps.create(conn, name, c.catalog, owner=session.account.username,
                                    actor=ops.actor(session.account))
    except Refused as e:
        return await _cards(request, session, _refusal_text(e), name)
    return RedirectResponse(f"/console/apps/{app.sdkappid}?done=created", status_code=303)


def _refusal_text(e: Refused) -> str:
    return f"{e.rule}: {e.message}" if e.rule else _sentence(e.message)


# ------------------------------------------------------------------ Basic Configuration


def _value_text(catalog: Catalog, key: str, value: ItemValue) -> str:
    kind = catalog.items[key].kind
    if kind == "switch":
        return "On" if value else "Off"
    if key == "history_days":
        return f"{value} days"
    return f"{int(value):,}"


def _plan_label(catalog: Catalog, plan: AppPlan) -> str:
    return "Disabled" if plan.status == "disabled" else catalog.edition(plan.edition).label


def _history(catalog: Catalog, events: list[PlanEvent], c: Ctx) -> list[dict[str, Any]]:
    out = []
    for e in reversed(events):
        changes: list[str] = []
        if e.before is None:
            changes.append(f"Created on {catalog.edition(e.after.edition).label}")
        else:
            if e.before.edition != e.after.edition:
                changes.append(f"{catalog.edition(e.before.edition).label} → "
                               f"{catalog.edition(e.after.edition).label}")
            if e.before.status != e.after.status:
                changes.append(f"{e.before.status.capitalize()} → "
                               f"{e.after.status.capitalize()}")
            for key in ITEM_KEYS:
                a, b = e.before.items[key], e.after.items[key]
                if a != b:
                    changes.append(f"{catalog.items[key].title}: "
                                   f"{_value_text(catalog, key, a)} → "
                                   f"{_value_text(catalog, key, b)}")
        out.append({
            "seq": e.seq, "at": when(e.at, c.tz), "actor": e.actor,
            "operation": OPERATION_TITLES.get(e.operation, e.operation),
            "kind": e.operation, "changes": changes,
            "label": _plan_label(catalog, e.after),
        })
    return out


def _items(catalog: Catalog, app: App, view: dict[str, Any], c: Ctx) -> list[dict[str, Any]]:
    rows = []
    edition = app.plan.edition
    for key in ITEM_KEYS:
        offer = catalog.offer(key, edition)
        value = app.plan.items[key]
        if not offer.offered:
            text = dialogs.note(catalog, key, edition)
            price = text[:1].upper() + text[1:]
        else:
            cost = offer.price_of(value)
            price = "Included" if cost == 0 else f"{money(cost)}/month"
        rows.append({
            "key": key, "title": catalog.items[key].title,
            "value": _value_text(catalog, key, value) if offer.offered else "—",
            "price": price, "r4": _r4(view, key, c),
        })
    return rows


def _r4(view: dict[str, Any], key: str, c: Ctx) -> dict[str, str] | None:
    if view["status"] == "disabled":
        return None
    if view["changeable"].get(key):
        return {"state": "ok", "text": "Can change this month"}
    later = view["next_change_from"].get(key)
    if later:
        return {"state": "held",
                "text": f"Changed this month · next change from {when(later, c.tz)[:10]}"}
    return None


async def _app_page(request: Request, session: Session, sdkappid: int, *,
                    open_dialog: str | None = None, error: Refused | None = None,
                    submitted: dict[str, str] | None = None) -> Response:
    c = ops.ctx(request)
    cat = c.catalog
    async with c.db.read() as conn:
        app = await ops.owned(conn, sdkappid, session.account)
        view = await apps.view(conn, app, cat, c.tz)
        events = await apps.history(conn, sdkappid)
    active = app.plan.status == "active"
    postpaid = cat.edition(app.plan.edition).postpaid
    actions = {"upgrade": active and not postpaid, "configure": active and postpaid,
               "disable": active}
    ordered = sorted(cat.editions.values(), key=lambda e: e.order)
    upgrade_keys = [e.key for e in ordered if e.postpaid]
    configure_keys = [e.key for e in ordered]

    def chosen(dialog: str, default: str) -> str:
        if open_dialog == dialog and submitted and submitted.get("edition") in cat.editions:
            return submitted["edition"]
        return default

    ctx = await page_context(request, session)
    ctx.update(
        app=app, view=view, tab="basic", tab_title="Basic Configuration",
        actions=actions, postpaid=postpaid,
        items=_items(cat, app, view, c),
        limits=[{"key": k, "title": LIMIT_TITLES[k], "value": number(view["limits"][k])}
                for k in LIMIT_TITLES],
        version_r4=_r4(view, "service_version", c),
        history=_history(cat, events, c),
        upgrade_editions=dialogs.editions(
            cat, app.plan, upgrade_keys, submitted if open_dialog == "upgrade" else None),
        configure_editions=dialogs.editions(
            cat, app.plan, configure_keys, submitted if open_dialog == "configure" else None),
        upgrade_choice=chosen("upgrade", upgrade_keys[0]),
        configure_choice=chosen("configure", app.plan.edition),
        open_dialog=open_dialog,
        dialog_error=error,
        typed_name=(submitted or {}).get("confirm", "") if open_dialog == "disable" else "",
        notice=DONE.get(request.query_params.get("done", "")),
        trial_limits=[{"title": LIMIT_TITLES[k], "value": number(v)}
                      for k, v in plans.effective_limits(
                          plans.initial_plan(cat), cat).items() if k in LIMIT_TITLES],
    )
    return render("app.html", **ctx)


@router.get("/apps/{sdkappid}")
async def app_page(request: Request, sdkappid: int) -> Response:
    return await _app_page(request, await signed_in(request), sdkappid)


async def _dialog_action(request: Request, sdkappid: int, op: str) -> Response:
    session = await signed_in(request)
    data = await auth.form(request)
    auth.check_form_csrf(session, data)
    data["op"] = op
    c = ops.ctx(request)
    try:
        async with c.db.read() as conn:
            app = await ops.owned(conn, sdkappid, session.account)
        req = dialogs.parse(data, c.catalog, app.plan)
        await ops.apply(c, session.account, sdkappid, req)
    except NotFound:
        raise
    except Refused as e:
        return await _app_page(request, session, sdkappid, open_dialog=op, error=e,
                               submitted=data)
    done = req.kind if req.kind != "auto" else "configure"
    return RedirectResponse(f"/console/apps/{sdkappid}?done={done}", status_code=303)


@router.post("/apps/{sdkappid}/upgrade")
async def upgrade(request: Request, sdkappid: int) -> Response:
    return await _dialog_action(request, sdkappid, "upgrade")


@router.post("/apps/{sdkappid}/configure")
async def configure(request: Request, sdkappid: int) -> Response:
    return await _dialog_action(request, sdkappid, "configure")


@router.post("/apps/{sdkappid}/disable")
async def disable(request: Request, sdkappid: int) -> Response:
    return await _dialog_action(request, sdkappid, "disable")


@router.post("/apps/{sdkappid}/preview")
async def preview_fragment(request: Request, sdkappid: int) -> HTMLResponse:
    """The cost preview (B7) inside a dialog, as HTML the dialog swaps in."""
    session = await auth.current(request)
    if session is None:
        return HTMLResponse(fragment("preview.html", state="signed-out"))
    data = await auth.form(request)
    auth.check_form_csrf(session, data)
    c = ops.ctx(request)
    context: dict[str, Any] = {"state": "ok", "refused": None}
    try:
        async with c.db.read() as conn:
            app = await ops.owned(conn, sdkappid, session.account)
        if data.get("op") == "disable":
            req = PlanRequest("disable")  # the typed name is checked on confirm
        else:
            req = dialogs.parse(data, c.catalog, app.plan)
        if dialogs.names_nothing(req, app.plan):
            return HTMLResponse(fragment("preview.html", state="idle"))
        p = await ops.preview(c, session.account, sdkappid, req)
    except NotFound:
        raise
    except Refused as e:
        return HTMLResponse(fragment("preview.html", state="refused", refused=e))
    before = plans.effective_limits(p.before, c.catalog)["history_days"]
    after = plans.effective_limits(p.after, c.catalog)["history_days"]
    context.update(
        p=p.costs, after_label=_plan_label(c.catalog, p.after),
        after_postpaid=(p.after.status == "active"
                        and c.catalog.edition(p.after.edition).postpaid),
        overage={k: f"{v.free:,}" for k, v in c.catalog.overage.items()},
        shorter_history=(before, after) if (after is not None and before is not None
                                           and after < before and p.after.status == "active")
        else None,
        lines=p.costs["lines"], tz=c.tz,
    )
    return HTMLResponse(fragment("preview.html", **context))


# ------------------------------------------------------------------ bills


async def _app_for_tab(request: Request, sdkappid: int) -> tuple[Session, Ctx, App]:
    session = await signed_in(request)
    c = ops.ctx(request)
    async with c.db.read() as conn:
        app = await ops.owned(conn, sdkappid, session.account)
    return session, c, app


@router.get("/apps/{sdkappid}/bills")
async def bills_page(request: Request, sdkappid: int) -> Response:
    session, c, app = await _app_for_tab(request, sdkappid)
    async with c.db.read() as conn:
        rows = await bills.list_for(conn, sdkappid)
    ctx = await page_context(request, session)
    ctx.update(app=app, tab="bills", tab_title="Bills", bills=list(reversed(rows)),
               bill_day=c.settings.bill_day)
    return render("bills.html", **ctx)


@router.get("/apps/{sdkappid}/bills/{month}")
async def bill_page(request: Request, sdkappid: int, month: str) -> Response:
    session, c, app = await _app_for_tab(request, sdkappid)
    try:
        m = parse_month(month)
    except ValueError:
        raise NotFound(f"no bill for {month!r}") from None
    async with c.db.read() as conn:
        bill = await bills.get(conn, sdkappid, m, c.tz)
    ctx = await page_context(request, session)
    ctx.update(app=app, tab="bills", tab_title=f"Bill {bill['number']}", bill=bill, tz=c.tz)
    return render("bill.html", **ctx)


# ------------------------------------------------------------------ usage


def _plan_at(events: list[PlanEvent], t: datetime) -> AppPlan | None:
    plan = None
    for e in events:
        if e.at <= t:
            plan = e.after
    return plan


@router.get("/apps/{sdkappid}/usage")
async def usage_page(request: Request, sdkappid: int, month: str | None = None) -> Response:
    session, c, app = await _app_for_tab(request, sdkappid)
    async with c.db.read() as conn:
        now = await clock.now(conn)
        error = None
        try:
            m = parse_month(month) if month else month_of(now, c.tz)
        except ValueError:
            m, error = month_of(now, c.tz), f"Not a month: {month!r} (use YYYY-MM)."
        days = await usage.month(conn, sdkappid, *m, c.tz)
        events = await apps.history(conn, sdkappid)
    today = now.astimezone(c.tz).date()
    series: dict[str, list[charts.Day]] = {"dau": [], "groups": [], "av_rooms": []}
    for row in days:
        d = date.fromisoformat(str(row["date"]))
        end = datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=c.tz)
        plan = _plan_at(events, min(end - timedelta(microseconds=1), now))
        limits = plans.effective_limits(plan, c.catalog) if plan else {}
        for key in series:
            series[key].append(charts.Day(d, int(str(row[key])), limits.get(key),
                                          future=d > today))
    specs = [("dau", "Daily active users", "#006eff"),
             ("groups", "Groups (non-AV, daily peak)", "#00a870"),
             ("av_rooms", "AV chat rooms (daily peak)", "#f08a24")]
    panels = []
    current = month_of(now, c.tz) == m
    for key, title, color in specs:
        s = series[key]
        panels.append({
            "key": key, "title": title, "peak": max((x.value for x in s), default=0),
            "limit": number(s[-1].limit if s else None),
            "limit_when": "now" if current else f"on {days[-1]['date']}" if days else "",
            "svg": charts.bar_chart(f"chart-{key}", f"{title}, {bills.month_key(m)}", s, color),
        })
    prev = (m[0] - 1, 12) if m[1] == 1 else (m[0], m[1] - 1)
    created = month_of(app.created_at, c.tz)
    ctx = await page_context(request, session)
    ctx.update(app=app, tab="usage", tab_title="Usage", month=bills.month_key(m),
               panels=panels, days=days, error=error,
               prev_month=bills.month_key(prev) if prev >= created else None,
               next_month=bills.month_key(next_month(*m))
               if month_start(*next_month(*m), c.tz) <= now else None)
    return render("usage.html", **ctx)


# ------------------------------------------------------------------ content filter


async def _filter_page(request: Request, session: Session, sdkappid: int,
                       error: str | None = None, typed: str = "") -> Response:
    c = ops.ctx(request)
    async with c.db.read() as conn:
        app = await ops.owned(conn, sdkappid, session.account)
        words = await filters.words(conn, sdkappid)
    offer = c.catalog.offer("content_filtering", app.plan.edition)
    ctx = await page_context(request, session)
    ctx.update(app=app, tab="filter", tab_title="Content Filter", words=words,
               on=bool(app.plan.items["content_filtering"]),
               active=app.plan.status == "active",
               postpaid=c.catalog.edition(app.plan.edition).postpaid,
               price=money(c.catalog.offer("content_filtering", "pro").price
                           if not offer.offered else offer.price),
               error=error, typed=typed,
               notice={"added": "Added.", "removed": "Removed."}.get(
                   request.query_params.get("done", "")))
    return render("filter.html", **ctx)


@router.get("/apps/{sdkappid}/filter")
async def filter_page(request: Request, sdkappid: int) -> Response:
    return await _filter_page(request, await signed_in(request), sdkappid)


@router.post("/apps/{sdkappid}/filter")
async def filter_change(request: Request, sdkappid: int) -> Response:
    session = await signed_in(request)
    data = await auth.form(request)
    auth.check_form_csrf(session, data)
    c = ops.ctx(request)
    action = data.get("action", "add")
    try:
        async with c.db.write() as conn:
            app = await ops.owned(conn, sdkappid, session.account)
            if app.plan.status != "active" or not app.plan.items["content_filtering"]:
                raise Refused("content filtering is off for this app: turn it on first",
                              rule="E4")
            if action == "remove":
                await filters.remove(conn, sdkappid, [data.get("word", "")])
            else:
                words = [w for w in data.get("words", "").splitlines() if w.strip()]
                if not words:
                    raise Refused("type a word or phrase to add", rule="E4")
                await filters.add(conn, sdkappid, words)
    except NotFound:
        raise
    except (Refused, ValueError) as e:
        message = e.message if isinstance(e, Refused) else str(e)
        return await _filter_page(request, session, sdkappid, _sentence(message),
                                  data.get("words", ""))
    done = "removed" if action == "remove" else "added"
    return RedirectResponse(f"/console/apps/{sdkappid}/filter?done={done}", status_code=303)

