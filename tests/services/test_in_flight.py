"""The adaptive in-flight cap: uploads of one company in flight follow Personio's answer time (issue 12).

``in_flight_cap`` is Little's law with headroom; ``dispatch_connection`` applies it below the
configured bound and never claims more than the company's budget has left.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from models import Connection, Upload
from ratelimit import CompanyRateLimiter, LatencyStats, RateBudget
from services.context import UploadPolicy
from services.dispatch import (
    IN_FLIGHT_HEADROOM,
    UNOBSERVED_IN_FLIGHT,
    DispatchResult,
    dispatch_connection,
    due_connections,
    in_flight_cap,
)
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from tests.factories import make_connection, make_upload

if TYPE_CHECKING:
    from tests.conftest import Clock

COMPANY = 1000
RATE = 20 / 2.0  # the tests' time-scaled budget, 20 requests per 2 s


# ------------------------------------------------------------------ the formula


@pytest.mark.parametrize(
    ("latency", "expected"),
    [
        (None, UNOBSERVED_IN_FLIGHT),  # nothing observed yet: the former fixed cap
        (0.05, 3),  # 20-80 ms answers: 10/s × 0.05 s × 1.5 = 0.75 → 1, + 2 spare
        (0.225, 6),  # 50-400 ms answers: 10/s × 0.225 s × 1.5 = 3.4 → 4, + 2 spare
        (10.0, 8),  # bounded by the setting
        (0.0, 2),
    ],
)
def test_cap_follows_latency_within_its_bound(latency: float | None, expected: int) -> None:
    assert in_flight_cap(rate=RATE, latency=latency, maximum=8) == expected


def test_cap_at_personios_real_pace() -> None:
    # 20 per 60 s, 0.2-1.5 s answers: one upload in flight keeps up on average; two wait for slots.
    assert in_flight_cap(rate=20 / 60, latency=0.85, maximum=8) == 3


@given(
    rate=st.floats(min_value=0.0, max_value=1000.0),
    latency=st.one_of(st.none(), st.floats(min_value=0.0, max_value=600.0)),
    maximum=st.integers(min_value=1, max_value=100),
)
def test_cap_is_at_least_one_at_most_the_bound_and_keeps_the_budget_busy(rate: float, latency: float | None, maximum: int) -> None:
    cap = in_flight_cap(rate=rate, latency=latency, maximum=maximum)

    assert 1 <= cap <= maximum
    if latency is not None and cap < maximum:
        # Little's law: that many in flight carry `rate` requests/s at `latency` s each.
        assert cap >= rate * latency * IN_FLIGHT_HEADROOM


@given(rate=st.floats(min_value=0.0, max_value=100.0), low=st.floats(min_value=0.0, max_value=60.0), extra=st.floats(min_value=0.0, max_value=60.0))
def test_slower_answers_never_lower_the_cap(rate: float, low: float, extra: float) -> None:
    assert in_flight_cap(rate=rate, latency=low, maximum=50) <= in_flight_cap(rate=rate, latency=low + extra, maximum=50)


def test_no_bound_no_flight() -> None:
    assert in_flight_cap(rate=RATE, latency=1.0, maximum=0) == 0
    assert in_flight_cap(rate=math.inf, latency=1.0, maximum=3) == min(UNOBSERVED_IN_FLIGHT, 3)


# ------------------------------------------------------------------ in dispatch


@pytest.fixture
def latency(fake_redis: fakeredis.FakeRedis) -> LatencyStats:
    return LatencyStats(fake_redis, key_prefix="test-rl")  # the limiter fixture's prefix


@pytest.fixture
def policy(upload_policy: UploadPolicy) -> UploadPolicy:
    return replace(upload_policy, company_concurrency=8, budget_per_second=RATE)


def _backlog(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, clock: Clock, count: int) -> int:
    connection_id = make_connection(session, cipher, company_id=COMPANY).id
    for n in range(count):
        make_upload(session, intake_policy, clock(), f"r{n}", email=f"c{n}@example.org")
    session.commit()
    return connection_id


def _claim(session_factory: sessionmaker[Session], connection_id: int, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock, latency: LatencyStats | None) -> int:
    with session_factory.begin() as session:
        return len(dispatch_connection(session, connection_id, policy=policy, limiter=limiter, now=clock(), latency=latency).claimed)


def _observe(latency: LatencyStats, seconds: float, count: int = 8) -> None:
    for _ in range(count):
        latency.record(str(COMPANY), "applications", seconds)


@pytest.mark.parametrize(("answer_seconds", "in_flight"), [
    pytest.param(0.225, 6, id="slow-answers-put-more-uploads-in-flight"),
    pytest.param(0.05, 3, id="fast-answers-keep-few-in-flight"),
])
def test_in_flight_follows_the_answer_time(
    session: Session, session_factory: sessionmaker[Session], cipher: TokenCipher, intake_policy: IntakePolicy,
    policy: UploadPolicy, limiter: CompanyRateLimiter, latency: LatencyStats, clock: Clock, answer_seconds: float, in_flight: int,
) -> None:
    connection_id = _backlog(session, cipher, intake_policy, clock, 12)
    _observe(latency, answer_seconds)

    assert _claim(session_factory, connection_id, policy, limiter, clock, latency) == in_flight
    assert _claim(session_factory, connection_id, policy, limiter, clock, latency) == 0  # the cap counts those in flight


def test_no_tracker_means_the_bound_is_the_cap(
    session: Session, session_factory: sessionmaker[Session], cipher: TokenCipher, intake_policy: IntakePolicy,
    policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock,
) -> None:
    connection_id = _backlog(session, cipher, intake_policy, clock, 12)

    assert _claim(session_factory, connection_id, replace(policy, company_concurrency=3), limiter, clock, None) == 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(used=st.integers(min_value=0, max_value=20), seconds=st.floats(min_value=0.001, max_value=5.0), bound=st.integers(min_value=1, max_value=12))
def test_never_more_claims_than_the_cap_or_the_budget_left(
    session_factory: sessionmaker[Session], cipher: TokenCipher, intake_policy: IntakePolicy, upload_policy: UploadPolicy,
    fake_redis: fakeredis.FakeRedis, clock: Clock, used: int, seconds: float, bound: int,
) -> None:
    fake_redis.flushall()
    limiter = CompanyRateLimiter(fake_redis, RateBudget(limit=20, period=2.0), key_prefix="test-rl", clock=clock.timestamp)
    latency = LatencyStats(fake_redis, key_prefix="test-rl")
    policy = replace(upload_policy, company_concurrency=bound, budget_per_second=RATE)
    with session_factory() as session:
        session.execute(delete(Upload))
        session.execute(delete(Connection))
        session.commit()
        connection_id = _backlog(session, cipher, intake_policy, clock, 14)
    for _ in range(used):
        assert limiter.try_acquire(str(COMPANY)).granted
    _observe(latency, seconds)

    claimed = _claim(session_factory, connection_id, policy, limiter, clock, latency)

    assert claimed <= in_flight_cap(rate=RATE, latency=latency.observed(str(COMPANY)).mean, maximum=bound)
    assert claimed <= 20 - used  # never more than the budget left in the window



# ------------------------------------------------------------------ in the pump


def test_the_pump_skips_a_company_at_its_own_cap_not_only_at_the_bound(
    session: Session, session_factory: sessionmaker[Session], cipher: TokenCipher, intake_policy: IntakePolicy,
    policy: UploadPolicy, limiter: CompanyRateLimiter, latency: LatencyStats, clock: Clock,
) -> None:
    connection_id = _backlog(session, cipher, intake_policy, clock, 12)
    _observe(latency, 0.05)  # fast answers: cap 3 of at most 8
    assert _claim(session_factory, connection_id, policy, limiter, clock, latency) == 3

    with session_factory() as pump:
        at_its_cap = due_connections(pump, clock(), concurrency=8, latency=latency, rate=RATE)
        by_the_bound = due_connections(pump, clock(), concurrency=8)

    assert at_its_cap == []  # dispatch would claim nothing: no transaction for it
    assert by_the_bound == [connection_id]

    _observe(latency, 0.3, count=30)  # slower answers: a higher cap, a free slot again
    with session_factory() as pump:
        assert due_connections(pump, clock(), concurrency=8, latency=latency, rate=RATE) == [connection_id]


def _spend_budget(limiter: CompanyRateLimiter) -> None:
    """Other workers take the company's whole window (20 requests)."""
    for _ in range(20):
        assert limiter.try_acquire(str(COMPANY)).granted


def _dispatch_with_short_wait(
    session_factory: sessionmaker[Session], connection_id: int, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock
) -> DispatchResult:
    """Dispatch with a 50 ms short budget wait (what the step sleeps instead of parking)."""
    with session_factory.begin() as dispatcher:
        return dispatch_connection(dispatcher, connection_id, policy=replace(policy, short_budget_wait=0.05), limiter=limiter, now=clock())


@pytest.fixture
def backlog_without_budget(
    session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, limiter: CompanyRateLimiter, clock: Clock
) -> int:
    """A company with three uploads waiting and its whole window spent by other workers; its connection id."""
    connection_id = _backlog(session, cipher, intake_policy, clock, 3)
    _spend_budget(limiter)
    return connection_id


def test_without_budget_dispatch_looks_again_a_moment_before_the_slot_frees(
    session_factory: sessionmaker[Session], policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock, backlog_without_budget: int,
) -> None:
    result = _dispatch_with_short_wait(session_factory, backlog_without_budget, policy, limiter, clock)

    assert result.claimed == [] and result.wake_in == pytest.approx(2.0 - 0.05)  # the step sleeps the rest


def test_a_slot_that_frees_within_the_short_wait_is_claimed_now(
    session_factory: sessionmaker[Session], policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock, backlog_without_budget: int,
) -> None:
    clock.advance(2.0 - 0.03)  # the first slot frees in 30 ms

    result = _dispatch_with_short_wait(session_factory, backlog_without_budget, policy, limiter, clock)

    assert len(result.claimed) == 1  # the step sleeps the last 30 ms (services.processing._take_token)
