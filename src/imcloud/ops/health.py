"""Readiness (`/readyz`): can this node serve — is its database reachable, and its broker?

Liveness (`/healthz`) only says the process answers; readiness is what a load balancer
should route by. Each check is bounded in time, so a database or Redis that hangs makes
the node unready instead of hanging the probe.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from imcloud.realtime.broker import Broker, MemoryBroker
from imcloud.store.db import Database

log = logging.getLogger("imcloud.health")

TIMEOUT = 2.0  # seconds each check may take


@dataclass
class Readiness:
    checks: dict[str, str]
    failed: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.failed

    def body(self) -> dict[str, Any]:
        if self.ready:
            return {"status": "ready", "checks": self.checks}
        return {"status": "unavailable", "failed": self.failed, "checks": self.checks}


async def _database(db: Database) -> None:
    async with db.read() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def _broker(broker: Broker) -> None:
    if not await broker.ping():
        raise ConnectionError("the broker does not answer PING")


async def _check(name: str, work: Any) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(work, TIMEOUT)
        return name, None
    except TimeoutError:
        return name, f"no answer within {TIMEOUT:g} s"
    except Exception as e:  # any failure means not ready; the body says which check
        return name, type(e).__name__


async def check(db: Database, broker: Broker) -> Readiness:
    """Both checks at once; the body names each one's outcome (an error's class only:
    details, which may name hosts, go to the log)."""
    results = await asyncio.gather(
        _check("database", _database(db)), _check("broker", _broker(broker))
    )
    checks = {name: ("ok" if error is None else error) for name, error in results}
    if isinstance(broker, MemoryBroker):
        checks["broker"] = "ok (in-process)"
    return Readiness(checks, [name for name, error in results if error is not None])


class Watch:
    """Logs when readiness changes, not on every probe (probes come every few seconds)."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def saw(self, r: Readiness) -> None:
        if r.failed != self.failed:
            if r.failed:
                log.warning(
                    "not ready: %s",
                    ", ".join(f"{n}: {r.checks[n]}" for n in r.failed),
                    extra={"failed": r.failed},
                )
            else:
                log.info("ready again")
            self.failed = list(r.failed)
