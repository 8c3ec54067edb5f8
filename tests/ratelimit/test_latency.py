"""ratelimit.latency and the adaptive margin: answer times per company, and a window that follows their spread.

The property tests drive the limiter with a hand clock and replay every granted request into
the Personio stand-in's own budget (``sandbox.SandboxState``), which counts a request when it
*arrives*. Arrival = the moment the slot was taken + a delay within the margin the limiter used,
which is what "answer times within the observed spread" allows. The stand-in must never refuse.
Times are multiples of 1/64 s, exact in binary and in whole microseconds, so the limiter's µs
arithmetic and the stand-in's float arithmetic agree at the window's edges.
"""

from __future__ import annotations

import math

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimit import CompanyRateLimiter, LatencyStats, RateBudget
from sandbox import CompanyConfig, SandboxConfig, SandboxState
from tests.ratelimit.conftest import FakeClock

TICK = 1 / 64
PERIOD = 2.0
CEILING = 0.5  # the configured margin: the most the window is widened by, and the fallback
FLOOR = 2 * TICK
COMPANY = "4242"


def stats(client: redis.Redis, key_prefix: str = "test-rl", **kwargs: int) -> LatencyStats:
    return LatencyStats(client, key_prefix=key_prefix, **kwargs)  # type: ignore[arg-type]  # ints for the sizes


def limiter(client: redis.Redis, clock: FakeClock, *, limit: int = 20, floor: float | None = FLOOR, key_prefix: str = "test-rl") -> CompanyRateLimiter:
    budget = RateBudget(limit=limit, period=PERIOD, margin=CEILING, margin_floor=floor)
    return CompanyRateLimiter(client, budget, key_prefix=key_prefix, clock=clock)


def nearest_rank_spread(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * (len(ordered) - 1))] - ordered[math.floor(0.05 * (len(ordered) - 1))]


# ------------------------------------------------------------------ the store


def test_answer_times_keep_a_mean_per_endpoint_and_overall(any_redis: redis.Redis, key_prefix: str) -> None:
    latency = stats(any_redis, key_prefix, min_samples=4)
    assert latency.observed(COMPANY).mean is None and latency.observed(COMPANY).samples == 0

    latency.record(COMPANY, "documents", 1.0)
    latency.record(COMPANY, "applications", 0.2)
    latency.record(COMPANY, "documents", 2.0)

    observed = latency.observed(COMPANY)
    assert observed.samples == 3
    assert observed.by_endpoint["documents"] == pytest.approx(1.0 + 0.2 * (2.0 - 1.0))
    assert observed.by_endpoint["applications"] == pytest.approx(0.2)
    assert observed.mean == pytest.approx((1.0 + 0.2 * (0.2 - 1.0)) + 0.2 * (2.0 - (1.0 + 0.2 * (0.2 - 1.0))))
    assert observed.spread is None  # fewer than min_samples answers: no spread yet
    assert latency.observed("other").samples == 0  # per company


def test_spread_is_p95_minus_p5_of_the_last_answers(any_redis: redis.Redis, key_prefix: str) -> None:
    latency = stats(any_redis, key_prefix, ring_size=64, min_samples=8)
    answers = [0.2 + 1.3 * i / 99 for i in range(100)]  # 0.2-1.5 s, oldest first

    for seconds in answers:
        latency.record(COMPANY, "documents", seconds)

    assert latency.observed(COMPANY).spread == pytest.approx(nearest_rank_spread(answers[-64:]), abs=1e-6)


def test_means_of_many_companies_in_one_round_trip(any_redis: redis.Redis, key_prefix: str) -> None:
    latency = stats(any_redis, key_prefix)
    latency.record("1", "documents", 0.5)
    latency.record("3", "applications", 0.25)

    assert latency.means(["1", "2", "3"]) == {"1": 0.5, "2": None, "3": 0.25}
    assert latency.means([]) == {}


def test_the_hash_expires_and_stays_small(fake_redis: fakeredis.FakeRedis) -> None:
    latency = stats(fake_redis, ring_size=16, min_samples=4)
    for i in range(100):
        latency.record(COMPANY, "documents" if i % 2 else "applications", 0.1 + i / 1000)

    key = latency.key(COMPANY)
    assert 0 < fake_redis.pttl(key) <= 3_600_000
    assert fake_redis.hlen(key) == 16 + 5  # ring, n, ewma, two endpoints, spread


def test_answer_times_are_not_negative(fake_redis: fakeredis.FakeRedis) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        stats(fake_redis).record(COMPANY, "documents", -0.1)


def test_the_latency_key_shares_the_limiters_cluster_slot() -> None:
    assert stats(fakeredis.FakeRedis(), "p").key("7") == "p:{7}:lat"


# ------------------------------------------------------------------ the adaptive margin


def test_margin_is_the_configured_one_until_answers_are_observed(fake_redis: fakeredis.FakeRedis) -> None:
    clock = FakeClock()
    assert limiter(fake_redis, clock).peek(COMPANY).window == PERIOD + CEILING


@pytest.mark.parametrize(("answers", "margin"), [([0.2, 0.2 + 5 * TICK] * 8, 5 * TICK), ([0.2] * 16, FLOOR), ([0.1, 3.0] * 8, CEILING)])
def test_margin_follows_the_spread_between_floor_and_ceiling(fake_redis: fakeredis.FakeRedis, answers: list[float], margin: float) -> None:
    latency = stats(fake_redis)
    for seconds in answers:
        latency.record(COMPANY, "applications", seconds)

    assert limiter(fake_redis, FakeClock()).try_acquire(COMPANY).window == pytest.approx(PERIOD + margin)
    assert RateBudget(20, PERIOD, CEILING, margin_floor=FLOOR).margin_for(latency.observed(COMPANY).spread) == pytest.approx(margin)


def test_without_a_floor_the_margin_stays_fixed(fake_redis: fakeredis.FakeRedis) -> None:
    latency = stats(fake_redis)
    for seconds in [0.2] * 16:
        latency.record(COMPANY, "applications", seconds)

    assert limiter(fake_redis, FakeClock(), floor=None).peek(COMPANY).window == PERIOD + CEILING


def test_a_narrower_window_frees_slots_earlier_and_a_wider_one_still_sees_them(fake_redis: fakeredis.FakeRedis) -> None:
    clock = FakeClock()
    limited = limiter(fake_redis, clock, limit=1)
    latency = stats(fake_redis)
    for seconds in [0.3] * 16:
        latency.record(COMPANY, "documents", seconds)  # spread 0 → the floor
    assert limited.try_acquire(COMPANY).granted

    clock.advance(PERIOD + FLOOR - TICK)
    denied = limited.try_acquire(COMPANY)
    assert not denied.granted and denied.wait == pytest.approx(TICK)
    # The spread widens before the slot frees: the entry is still in the log and counts.
    for seconds in [0.1, 0.1 + CEILING] * 32:
        latency.record(COMPANY, "documents", seconds)
    clock.advance(TICK)
    assert not limited.try_acquire(COMPANY).granted
    clock.advance(CEILING - FLOOR)
    assert limited.try_acquire(COMPANY).granted


def test_invalid_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="margin floor"):
        RateBudget(20, 60.0, margin=2.0, margin_floor=3.0)
    with pytest.raises(ValueError, match="margin floor"):
        RateBudget(20, 60.0, margin=2.0, margin_floor=-1.0)


# ------------------------------------------------------------------ never a request the stand-in refuses


def _stand_in(limit: int) -> SandboxState:
    company = CompanyConfig(company_id=int(COMPANY), access_token="t", domain="c.jobs.personio.de")
    return SandboxState(SandboxConfig(companies=[company], rate_limit=limit, rate_window=PERIOD, lockout=PERIOD))


def _replay(limit: int, arrivals: list[float]) -> list[float]:
    """Arrival times the stand-in refused (it counts requests in the order they arrive)."""
    stand_in = _stand_in(limit)
    return [at for at in sorted(arrivals) if stand_in.acquire(int(COMPANY), "applications", now=at) is not None]


ticks = st.integers(min_value=0, max_value=48)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(min_value=1, max_value=6),
    spread_ticks=st.integers(min_value=0, max_value=48),
    gaps=st.lists(ticks, min_size=1, max_size=80),
    delays=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=80, max_size=80),
)
def test_no_grant_is_refused_by_the_stand_in_when_arrivals_vary_within_the_spread(
    limit: int, spread_ticks: int, gaps: list[int], delays: list[float]
) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    clock = FakeClock(1_000.0)
    latency = stats(client)
    base = 0.25
    for i in range(16):  # answer times base .. base + spread: p95 - p5 = the spread
        latency.record(COMPANY, "applications", base + (spread_ticks * TICK if i % 2 else 0.0))
    limited = limiter(client, clock, limit=limit)
    arrivals: list[float] = []
    for gap, fraction in zip(gaps, delays, strict=False):
        clock.advance(gap * TICK)
        acquisition = limited.try_acquire(COMPANY, "applications")
        if acquisition.granted:
            assert acquisition.window is not None
            margin = acquisition.window - PERIOD
            # The delay from taking the slot to arriving at Personio, anywhere within the margin used.
            arrivals.append(clock() + math.floor(fraction * margin / TICK) * TICK)

    assert _replay(limit, arrivals) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(min_value=1, max_value=6),
    phases=st.lists(
        st.tuples(st.integers(min_value=0, max_value=48), st.lists(ticks, min_size=1, max_size=20)), min_size=1, max_size=5
    ),
    fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_no_grant_is_refused_while_the_spread_changes(limit: int, phases: list[tuple[int, list[int]]], fraction: float) -> None:
    """Spreads change between phases; arrivals vary within the narrowest margin used over the run."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    clock = FakeClock(1_000.0)
    latency = stats(client)
    limited = limiter(client, clock, limit=limit)
    grants: list[float] = []
    margins: list[float] = []
    for spread_ticks, gaps in phases:
        for i in range(64):  # replace the whole ring: the new spread applies from now on
            latency.record(COMPANY, "applications", 0.25 + (spread_ticks * TICK if i % 2 else 0.0))
        for gap in gaps:
            clock.advance(gap * TICK)
            acquisition = limited.try_acquire(COMPANY, "applications")
            assert acquisition.window is not None
            margins.append(acquisition.window - PERIOD)
            if acquisition.granted:
                grants.append(clock())
    delay = math.floor(fraction * min(margins) / TICK) * TICK
    # Every request delayed alike is the trivial case; the extremes 0 and `delay` are the hard one.
    arrivals = [at + (delay if i % 2 else 0.0) for i, at in enumerate(grants)]

    assert _replay(limit, arrivals) == []


def test_the_replay_catches_a_margin_too_narrow_for_the_arrivals() -> None:
    """The check above can fail: arrivals spread wider than the margin are refused."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    clock = FakeClock(1_000.0)
    limited = limiter(client, clock, limit=2, floor=None)  # fixed margin CEILING
    arrivals = []
    for _ in range(3):
        assert limited.try_acquire(COMPANY, "applications").granted
        arrivals.append(clock())
        clock.advance((PERIOD + CEILING) / 2)
    arrivals[0] += CEILING + TICK  # the first arrives later than the margin allows

    assert _replay(2, arrivals) != []
