"""The frequency limits' pure parts: the sliding-window log (`imcloud.ratelimit.Log`), the
in-process limiter on an injected clock, the rules of `services.rates` on it (60007,
10023, 0 = off), and the settings that configure them. Redis: tests/integration/
test_rate_limits.py."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imcloud.catalog import load
from imcloud.errors import Code, Refused, refuse
from imcloud.ratelimit import LocalLimiter, Log, from_url
from imcloud.services.rates import Rates
from imcloud.settings import Settings


def admitted_times(times: list[float], limit: int, window: float = 1.0) -> list[bool]:
    log = Log(window)
    return [log.take("k", limit, t) for t in times]


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=0.7, allow_nan=False), max_size=200),
    limit=st.integers(min_value=1, max_value=12),
)
def test_log_admits_at_most_n_in_any_window_and_refuses_only_when_full(
    gaps: list[float], limit: int
) -> None:
    times, t = [], 0.0
    for g in gaps:
        t += g
        times.append(t)
    verdicts = admitted_times(times, limit)
    admitted = [t for t, ok in zip(times, verdicts, strict=True) if ok]
    for t, ok in zip(times, verdicts, strict=True):
        in_window = sum(1 for a in admitted if t - 1.0 < a <= t)
        if ok:  # never more than `limit` admitted in the window ending at an admission
            assert in_window <= limit
        else:  # refused only because the window already held `limit` admissions
            assert sum(1 for a in admitted if t - 1.0 < a <= t) == limit


def test_log_window_slides_and_keys_are_apart() -> None:
    log = Log(1.0)
    assert [log.take("a", 3, 0.1 * i) for i in range(5)] == [True, True, True, False, False]
    assert log.take("b", 3, 0.45)  # another key has its own window
    assert not log.take("a", 3, 0.99)
    assert log.take("a", 3, 1.0)  # the first admission (0.0) leaves the window at 1.0
    assert not log.take("a", 3, 1.05)
    assert log.take("a", 3, 1.11)  # 0.1 left at 1.1


def test_log_give_back_frees_the_place() -> None:
    log = Log(1.0)
    assert log.take("a", 2, 0.0) and log.take("a", 2, 0.1)
    assert not log.take("a", 2, 0.2)
    log.give_back("a", 0.1)
    assert log.take("a", 2, 0.2)
    assert not log.take("a", 2, 0.3)


def test_log_forgets_idle_keys() -> None:
    log = Log(1.0)
    for i in range(100):
        log.take(f"group{i}", 40, 0.0)
    log.take("busy", 40, 10.5)
    assert log.take("busy", 40, 20.6)  # a sweep ran (10 windows later)
    assert set(log.times) == {"busy"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_local_limiter_takes_and_gives_back_on_its_clock() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock=clock)

    async def scenario() -> None:
        tickets = [await limiter.take("k", 2) for _ in range(3)]
        assert tickets[0] is not None and tickets[1] is not None and tickets[2] is None
        await limiter.give_back(tickets[1])
        assert await limiter.take("k", 2) is not None
        assert await limiter.take("k", 2) is None
        clock.now += 1.0
        assert await limiter.take("k", 2) is not None

    asyncio.run(scenario())


def rates(rest: int, messages: int, clock: Clock) -> Rates:
    return Rates(LocalLimiter(clock=clock), rest, messages)


def test_60007_rest_calls_per_app_per_second() -> None:
    clock = Clock()
    r = rates(3, 0, clock)

    async def scenario() -> None:
        for _ in range(3):
            await r.rest_call(1400000001)
        with pytest.raises(Refused) as e:
            await r.rest_call(1400000001)
        assert e.value.code == Code.REST_FREQUENCY_LIMIT
        await r.rest_call(1400000002)  # another app: its own budget
        clock.now += 1.0
        await r.rest_call(1400000001)

    asyncio.run(scenario())


def test_10023_messages_per_group_refused_messages_give_their_place_back() -> None:
    clock = Clock()
    r = rates(0, 2, clock)

    async def send(group: str, refused_by: Code | None = None) -> None:
        async with r.group_message(1400000001, group):
            if refused_by is not None:
                raise refuse(refused_by, "a rule refused it")

    async def scenario() -> None:
        for _ in range(5):  # refused by another rule: nothing was sent, nothing spent
            with pytest.raises(Refused):
                await send("g", Code.CONTENT_BLOCKED)
        await send("g")
        await send("g")
        with pytest.raises(Refused) as e:
            await send("g")
        assert e.value.code == Code.MESSAGE_FREQUENCY_LIMIT
        await send("h")  # another group: its own second
        with pytest.raises(RuntimeError):  # any other failure keeps the place
            async with r.group_message(1400000001, "h"):
                raise RuntimeError("after the message may have been stored")
        with pytest.raises(Refused):
            await send("h")

    asyncio.run(scenario())


def test_zero_turns_a_limit_off() -> None:
    r = rates(0, 0, Clock())  # the clock never moves: one instant, no window ever passes

    async def scenario() -> None:
        for _ in range(5000):
            await r.rest_call(1400000001)
            async with r.group_message(1400000001, "g"):
                pass
        assert not r.may_wait

    asyncio.run(scenario())


def test_settings_defaults_are_tencents_and_env_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "IMCLOUD_REST_CALLS_PER_SECOND",
        "IMCLOUD_GROUP_MESSAGES_PER_SECOND",
        "IMCLOUD_NET_NEW_GROUPS_PER_DAY",
        "IMCLOUD_RATE_LIMIT_URL",
        "IMCLOUD_BROKER_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert (s.rest_calls_per_second, s.group_messages_per_second) == (200, 40)
    assert s.net_new_groups_per_day is None and s.rate_limit_url is None
    assert isinstance(from_url(s.rate_limit_url), LocalLimiter)

    monkeypatch.setenv("IMCLOUD_BROKER_URL", "redis://redis.internal:6379/0")
    assert Settings.from_env().rate_limit_url == "redis://redis.internal:6379/0"
    monkeypatch.setenv("IMCLOUD_RATE_LIMIT_URL", "memory://")  # per node, on purpose
    assert isinstance(from_url(Settings.from_env().rate_limit_url), LocalLimiter)

    monkeypatch.setenv("IMCLOUD_REST_CALLS_PER_SECOND", "0")
    monkeypatch.setenv("IMCLOUD_GROUP_MESSAGES_PER_SECOND", "100")
    monkeypatch.setenv("IMCLOUD_NET_NEW_GROUPS_PER_DAY", "0")
    s = Settings.from_env()
    assert (s.rest_calls_per_second, s.group_messages_per_second) == (0, 100)
    assert s.net_new_groups_per_day == 0

    for bad in ("-1", "ten", "1.5"):
        monkeypatch.setenv("IMCLOUD_GROUP_MESSAGES_PER_SECOND", bad)
        with pytest.raises(ValueError, match="IMCLOUD_GROUP_MESSAGES_PER_SECOND"):
            Settings.from_env()
    with pytest.raises(ValueError, match="rate-limit URL"):
        from_url("http://redis.internal")


def test_catalog_with_limit_sets_every_edition_and_keeps_the_rest() -> None:
    catalog = load()
    assert {e.limits["net_new_groups_per_day"] for e in catalog.editions.values()} == {10000}
    small = catalog.with_limit("net_new_groups_per_day", 5)
    assert {e.limits["net_new_groups_per_day"] for e in small.editions.values()} == {5}
    off = catalog.with_limit("net_new_groups_per_day", None)
    assert {e.limits["net_new_groups_per_day"] for e in off.editions.values()} == {None}
    assert catalog.edition("trial").limits["net_new_groups_per_day"] == 10000  # unchanged
    for key, e in small.editions.items():
        assert {k: v for k, v in e.limits.items() if k != "net_new_groups_per_day"} == {
            k: v for k, v in catalog.edition(key).limits.items() if k != "net_new_groups_per_day"
        }
