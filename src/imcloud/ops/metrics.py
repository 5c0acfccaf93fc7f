"""Every Prometheus metric of a node, defined here and nowhere else (docs/operations.md).

The hot paths pay one or two counter increments and nothing more: the children of
labelled counters are cached in plain dicts (prometheus_client's `labels()` takes a lock
and builds a tuple on every call), and what the hub counts anyway — open sessions,
messages handed to sessions — is read when Prometheus scrapes, not on every frame.
Label values are bounded: a command the API does not know is counted as "unknown", and
codes come from our own refusals.
"""

from __future__ import annotations

import importlib.metadata
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from imcloud.errors import Code


def _version() -> str:
    try:
        return importlib.metadata.version("imcloud")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# no `_created` series: one fewer series per label set
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_LATEST
INTERNAL = int(Code.INTERNAL)

V4_REQUESTS = Counter(
    "imcloud_v4_requests",
    "v4 REST calls answered, by command and ErrorCode (0 = OK).",
    ["command", "code"],
)
V4_SECONDS = Counter(
    "imcloud_v4_request_seconds",
    "Seconds spent answering v4 calls, by command (divided by the requests: mean latency).",
    ["command"],
)
REFUSALS = Counter(
    "imcloud_refusals",
    "Requests refused with an ErrorCode (limits, rate limits, checks), by surface "
    "(v4 = REST, ws = WebSocket login and frames) and code.",
    ["surface", "code"],
)
BILL_RUNS = Counter("imcloud_bill_runs", "Monthly bill runs (B6) finished by this process.")
BILLS_ISSUED = Counter("imcloud_bills_issued", "Bills inserted by this process's bill runs.")
HOUSEKEEPING_FAILURES = Counter(
    "imcloud_housekeeping_failures",
    "Passes of the housekeeping loop (bill runs, retention, usage) that failed.",
)
BUILD = Info("imcloud_build", "The imcloud version this node runs.")
BUILD.info({"version": _version()})

_v4: dict[tuple[str, int], tuple[Any, Any]] = {}
_refusals: dict[tuple[str, int], Any] = {}


def v4_request(command: str, code: int, seconds: float) -> None:
    """One answered v4 call (`command` is "service/name" of a known command, or
    "unknown")."""
    pair = _v4.get((command, code))
    if pair is None:
        pair = _v4[(command, code)] = (
            V4_REQUESTS.labels(command, str(code)),
            V4_SECONDS.labels(command),
        )
    pair[0].inc()
    pair[1].inc(seconds)
    if code and code != INTERNAL:
        refused("v4", code)


def refused(surface: str, code: int | None) -> None:
    """A request refused with a SPEC §7 code, whichever rule refused it."""
    key = (surface, code or 0)
    child = _refusals.get(key)
    if child is None:
        child = _refusals[key] = REFUSALS.labels(surface, str(code or 0))
    child.inc()


def bill_run(new_bills: int) -> None:
    BILL_RUNS.inc()
    BILLS_ISSUED.inc(new_bills)


class HubLike(Protocol):
    """What the scrape reads of a node's hub (realtime/hub.py)."""

    @property
    def connections(self) -> int: ...

    deliveries: int


class _HubCollector(Collector):
    """Open sockets and deliveries, read from the hubs of this process when scraped."""

    def __init__(self) -> None:
        self.hubs: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        hubs = list(self.hubs)
        yield GaugeMetricFamily(
            "imcloud_ws_connections",
            "Open WebSocket sessions on this node.",
            value=sum(h.connections for h in hubs),
        )
        yield CounterMetricFamily(
            "imcloud_ws_messages_delivered",
            "Messages (group and one-to-one) handed to WebSocket sessions on this node.",
            value=sum(h.deliveries for h in hubs),
        )


_hubs = _HubCollector()
REGISTRY.register(_hubs)


def watch(hub: HubLike) -> None:
    """Report this hub's sessions and deliveries (a node has one)."""
    _hubs.hubs.add(hub)


def unwatch(hub: HubLike) -> None:
    _hubs.hubs.discard(hub)


def render() -> bytes:
    """The text exposition of every metric of this process (and process_* metrics)."""
    return generate_latest(REGISTRY)
