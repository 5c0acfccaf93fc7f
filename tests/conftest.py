"""Shared fixtures: real databases (a SQLite file; the test PostgreSQL), the real CLI.

PostgreSQL tests read IMCLOUD_TEST_POSTGRES_URL. Without it they skip on a laptop and
fail in CI (CI=true), where a missing service is an error.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from imcloud.cli import cli
from imcloud.store import migrate

T = TypeVar("T")

POSTGRES_ENV = "IMCLOUD_TEST_POSTGRES_URL"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Heavy tests take their size from IMCLOUD_TEST_EXAMPLES (hypothesis examples).
EXAMPLES = int(os.environ.get("IMCLOUD_TEST_EXAMPLES", "60"))
settings.register_profile(
    "imcloud",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("imcloud")
# The fuzzers (tests/integration/test_fuzz_*.py): examples per v4 command for the
# hypothesis fuzzer, half that per operation for schemathesis.
FUZZ_EXAMPLES = int(os.environ.get("IMCLOUD_TEST_FUZZ_EXAMPLES", "24"))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def need_postgres() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    message = (
        f"PostgreSQL tests need {POSTGRES_ENV}, e.g. "
        f"{POSTGRES_ENV}=postgresql://postgres@127.0.0.1:5432/test make test"
    )
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# ------------------------------------------------------------------ SQLite


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


# ------------------------------------------------------------------ PostgreSQL


async def _pg_admin(base_url: str, *statements: str) -> None:
    import asyncpg

    dsn = base_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        for s in statements:
            await conn.execute(s)
    finally:
        await conn.close()


def _pg_url_for(base_url: str, dbname: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(base_url).set(database=dbname).render_as_string(hide_password=False)


_pg_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    base = need_postgres()
    name = f"imcloud_tpl_{os.getpid()}"
    run(_pg_admin(base, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"))
    migrate.upgrade(_pg_url_for(base, name))
    yield name
    run(_pg_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def new_postgres_db(template: str) -> str:
    base = need_postgres()
    name = f"imcloud_t_{os.getpid()}_{next(_pg_counter)}"
    run(_pg_admin(base, f"CREATE DATABASE {name} TEMPLATE {template}"))
    return name


def drop_postgres_db(name: str) -> None:
    run(_pg_admin(need_postgres(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# ------------------------------------------------------------------ both


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "imcloud.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
    else:
        template_name: str = request.getfixturevalue("postgres_template")
        name = new_postgres_db(template_name)
        try:
            yield _pg_url_for(need_postgres(), name)
        finally:
            drop_postgres_db(name)


class Cli:
    """The real `imcloud` command, run in-process against one database."""

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.runner = CliRunner()

    def raw(self, *args: str) -> Any:
        return self.runner.invoke(cli, [*args, "--db", self.db_url, "--json"])

    def __call__(self, *args: str) -> Any:
        """Run a command that must succeed; return its JSON."""
        result = self.raw(*args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return json.loads(result.stdout)

    def refused(self, *args: str) -> dict[str, Any]:
        """Run a command that must be refused (exit 1); return its error object."""
        result = self.raw(*args)
        assert result.exit_code == 1, (args, result.output, result.exception)
        error: dict[str, Any] = json.loads(result.stdout)["error"]
        return error


@pytest.fixture
def imcloud(db_url: str) -> Cli:
    return Cli(db_url)


# ------------------------------------------------------------------ fuzz counts


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzzers' request count (tests/fuzzcount.py), also in bench/out/fuzz-count.json."""
    from tests import fuzzcount

    line = fuzzcount.summary()
    if line:
        terminalreporter.write_sep("-", "fuzzing")
        terminalreporter.write_line(line)
        fuzzcount.write()
