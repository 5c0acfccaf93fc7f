"""Console fixtures: a real `imcloud serve` whose output is kept, console sign-in over
HTTP, and Debian's chromium driven by Playwright (Python).

Browser tests need the system's chromium (`apt-get install -y chromium`); without it
they skip with that message on a laptop and fail in CI (CI=true), where `.ci/run`
installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import IN_CI, Cli
from tests.integration.test_serve import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
PASSWORDS = {"alice": "alice-correct-horse", "bob": "bob-battery-staple"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]


class ConsoleServer:
    """`imcloud serve` as a process; everything it prints (stdout: access log, stderr:
    application log) is kept for `stop()` to return."""

    def __init__(self, db_url: str, log_dir: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.out = (log_dir / f"serve-{self.port}.out").open("w+b")
        exe = str(Path(sys.executable).with_name("imcloud"))
        self.proc = subprocess.Popen(
            [exe, "serve", "--port", str(self.port), "--db", db_url],
            stdout=self.out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        wait_until_up(f"{self.base}/healthz", self.proc)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.seek(0)
        text = self.out.read().decode(errors="replace")
        self.out.close()
        return text


T = TypeVar("T")


def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run fn on a thread of its own: Playwright's sync API keeps an event loop running
    on the test's thread, where asyncio.run() (the CLI's, the test helpers') may not
    start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


class ThreadCli(Cli):
    """The real CLI, run on a thread of its own (see `in_thread`)."""

    def raw(self, *args: str) -> Any:
        return in_thread(super().raw, *args)


def new_console_db(tmp_path: Path, start: str = "2019-02-01") -> tuple[str, Cli]:
    """A SQLite console database on a simulated clock, with alice and bob."""
    db = f"sqlite:///{tmp_path / 'console.db'}"
    imcloud = ThreadCli(db)
    imcloud("init", "--simulated-clock", start)
    for name, password in PASSWORDS.items():
        imcloud("console", "add-user", name, "--password", password)
    return db, imcloud


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


def sign_in_http(base: str, user: str, password: str | None = None) -> httpx.Client:
    """An HTTP client signed in through the login form; `.csrf` holds the session's
    CSRF token (taken from a page)."""
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/console/login")
    r = client.post("/console/login", data={
        "csrf_token": csrf_of(page.text), "username": user,
        "password": password or PASSWORDS[user], "next": "/console"})
    assert r.status_code == 303 and r.headers["location"] == "/console", r.text
    client.csrf = csrf_of(client.get("/console").text)  # type: ignore[attr-defined]
    return client


def api_client(base: str, user: str, password: str | None = None) -> httpx.Client:
    """An HTTP client signed in through the JSON API, sending the CSRF header."""
    client = httpx.Client(base_url=base, timeout=30)
    r = client.post("/console/api/login",
                    json={"username": user, "password": password or PASSWORDS[user]})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


# ------------------------------------------------------------------ the browser


def find_chromium() -> str | None:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        message = ("browser tests need Debian's chromium package: apt-get install -y "
                   "chromium (.ci/run installs it)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """Chromium for one test module. Not longer: while Playwright's sync API is active
    its event loop counts as running on this thread, and every other test's
    asyncio.run() would fail."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a dev dependency
        message = "browser tests need playwright: pip install -e '.[dev]'"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


class ConsoleErrors:
    """Every error-level console message and uncaught exception of a page."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def on_console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text} ({msg.location})")

    def on_error(self, exc: Any) -> None:
        self.errors.append(f"pageerror: {exc}")


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """Pages at 1280×800 whose browser console must stay free of errors."""
    contexts: list[Any] = []
    watchers: list[ConsoleErrors] = []

    def make() -> Any:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800},
                                  accept_downloads=True)
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        page = ctx.new_page()
        w = ConsoleErrors()
        page.on("console", w.on_console)
        page.on("pageerror", w.on_error)
        watchers.append(w)
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    errors = [e for w in watchers for e in w.errors]
    assert errors == [], "errors in the browser console:\n" + "\n".join(errors)


def sign_in_browser(page: Any, base: str, user: str) -> None:
    page.goto(f"{base}/console")
    page.wait_for_url("**/console/login**")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console")


def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page,
                    animations="disabled", caret="hide")
