"""Fixtures for the integration tests: the test Redis (for tests of several nodes).

Redis tests read IMCLOUD_TEST_REDIS_URL. Without it they skip on a laptop and fail in CI
(CI=true), where a missing service is an error — as PostgreSQL does (tests/conftest.py).
Redis pub/sub channels are global to the server, not per database number: the tests
that share it keep apart by using their own fresh apps (imcloud's channels are per app).
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import IN_CI

REDIS_ENV = "IMCLOUD_TEST_REDIS_URL"


def need_redis() -> str:
    url = os.environ.get(REDIS_ENV)
    if url:
        return url
    message = (
        f"Redis tests need {REDIS_ENV}, e.g. "
        f"{REDIS_ENV}=redis://127.0.0.1:6379/0 make test"
    )
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis, for `IMCLOUD_BROKER_URL` of servers run as several nodes."""
    return need_redis()
