"""Property tests: random traffic, lock-outs and time steps against a reference model.

Time moves in whole milliseconds, so the limiter's microsecond arithmetic and the
model's agree exactly and every comparison below can be ``==``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import fakeredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimit import CompanyRateLimiter, RateBudget

US = 1_000_000
COMPANIES = ("acme", "globex")
ENDPOINTS = ("documents", "applications")


class SteppedClock:
    def __init__(self, start_us: int) -> None:
        self.now_us = start_us

    def __call__(self) -> float:
        return self.now_us / US


@dataclass
class Model:
    """What an ideal shared sliding log with lock-outs would have decided."""

    limit: int
    window_us: int
    lockout_us: int
    per_endpoint: bool
    grants: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    lock_until: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Lock-outs as (from, until, op index) and grants as (time, op index): a grant at the
    # same instant as a lock-out but before it in program order is legitimate.
    lock_spans: dict[str, list[tuple[int, int, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    grant_log: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))

    def key(self, company: str, endpoint: str) -> tuple[str, str]:
        return (company, endpoint if self.per_endpoint else "*")

    def in_window(self, company: str, endpoint: str, now: int) -> list[int]:
        return [t for t in self.grants[self.key(company, endpoint)] if t > now - self.window_us]

    def expected_wait(self, company: str, endpoint: str, now: int) -> int:
        waits = [0]
        if self.lock_until[company] > now:
            waits.append(self.lock_until[company] - now)
        recent = self.in_window(company, endpoint, now)
        if len(recent) >= self.limit:
            waits.append(recent[len(recent) - self.limit] + self.window_us - now)
        return max(waits)


budgets = st.builds(
    lambda limit, period_ms, margin_ms, lockout_ms: RateBudget(
        limit=limit,
        period=period_ms / 1000,
        margin=margin_ms / 1000,
        lockout=None if lockout_ms is None else lockout_ms / 1000,
    ),
    limit=st.integers(1, 5),
    period_ms=st.sampled_from([500, 1_000, 2_500, 10_000, 60_000]),
    margin_ms=st.sampled_from([0, 250, 2_000]),
    lockout_ms=st.none() | st.integers(1, 90_000),
)
companies = st.sampled_from(COMPANIES)
operations = st.lists(
    st.one_of(
        # Mostly small steps so windows fill up, sometimes long ones so they drain.
        st.tuples(st.just("advance"), st.integers(0, 300) | st.integers(0, 70_000)),
        st.tuples(
            st.just("acquire"), companies, st.sampled_from(ENDPOINTS), st.integers(0, 1)
        ),
        st.tuples(st.just("lock"), companies, st.none() | st.integers(0, 90_000)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=budgets, per_endpoint=st.booleans(), ops=operations)
def test_random_traffic_matches_the_model_and_never_overshoots(
    budget: RateBudget, per_endpoint: bool, ops: list[tuple[Any, ...]]
) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    clock = SteppedClock(start_us=1_000 * US)
    # Two instances on one Redis stand in for two workers: nothing may live in either.
    workers = [
        CompanyRateLimiter(client, budget, per_endpoint=per_endpoint, clock=clock)
        for _ in range(2)
    ]
    model = Model(
        limit=budget.limit,
        window_us=round(budget.window * US),
        lockout_us=round(budget.lockout_seconds * US),
        per_endpoint=per_endpoint,
    )

    for index, op in enumerate(ops):
        now = clock.now_us
        if op[0] == "advance":
            clock.now_us += op[1] * 1_000
        elif op[0] == "lock":
            _, company, ms = op
            duration = model.lockout_us if ms is None else ms * 1_000
            workers[0].lock_out(company, None if ms is None else duration / US)
            if duration > 0 and now + duration > model.lock_until[company]:
                model.lock_spans[company].append((now, now + duration, index))
                model.lock_until[company] = now + duration
            assert round(workers[1].lockout_remaining(company) * US) == max(
                model.lock_until[company] - now, 0
            )
        else:
            _, company, endpoint, which = op
            limiter = workers[which]
            expected_wait = model.expected_wait(company, endpoint, now)
            used = len(model.in_window(company, endpoint, now))
            peeked = limiter.peek(company, endpoint)
            acquisition = limiter.try_acquire(company, endpoint)

            # Same answer, except that only the real acquisition holds a slot.
            assert peeked == replace(acquisition, slot=None)
            assert acquisition.granted == (expected_wait == 0)
            assert acquisition.locked_out == (model.lock_until[company] > now)
            assert round(acquisition.wait * US) == expected_wait
            if acquisition.granted:
                assert acquisition.remaining == budget.limit - used - 1
                model.grants[model.key(company, endpoint)].append(now)
                model.grant_log[company].append((now, index))
                continue

            assert acquisition.remaining == max(budget.limit - used, 0)
            assert acquisition.wait > 0
            # With no other traffic, waiting exactly `wait` is enough and a microsecond
            # less is not: the wait is neither optimistic nor padded.
            clock.now_us = now + expected_wait
            assert limiter.peek(company, endpoint).granted
            clock.now_us = now + expected_wait - 1
            assert not limiter.peek(company, endpoint).granted
            clock.now_us = now

    window_us = round(budget.window * US)
    for times in model.grants.values():
        # Any `limit + 1` consecutive grants must span at least one full window.
        for first, last in zip(times, times[budget.limit :]):
            assert last - first >= window_us
    for company, spans in model.lock_spans.items():
        for start, end, locked_at in spans:
            assert not any(
                start <= t < end and granted_at > locked_at
                for t, granted_at in model.grant_log[company]
            )
