"""Fixtures for the rate limiter: fakeredis with a hand-driven clock, and a real Redis.

The real Redis is the root conftest's ``real_redis_url``. Tests against a shared server keep
to a unique key prefix and delete only their own keys; nothing here flushes a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from ratelimit import CompanyRateLimiter, RateBudget


class FakeClock:
    """A clock that only moves when told to; starts well away from zero like a real epoch."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def key_prefix() -> str:
    return f"test-rl-{uuid.uuid4().hex}"


@pytest.fixture
def real_redis(real_redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(real_redis_url)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"{key_prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    # A fresh server per test, so tests cannot see each other's keys.
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture(params=["fakeredis", "real"])
def any_redis(request: pytest.FixtureRequest) -> redis.Redis:
    """Both back ends: fakeredis, and a real server (Redis 6.2 embedded or REDIS_URL)."""
    if request.param == "fakeredis":
        return request.getfixturevalue("fake_redis")
    return request.getfixturevalue("real_redis")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


LimiterFactory = Callable[..., CompanyRateLimiter]


@pytest.fixture
def make_limiter(any_redis: redis.Redis, clock: FakeClock, key_prefix: str) -> LimiterFactory:
    """Build limiters on the same Redis, clock and prefix, as separate workers would."""

    def make(budget: RateBudget | str = "3/10s", **kwargs: object) -> CompanyRateLimiter:
        if isinstance(budget, str):
            budget = RateBudget.parse(budget)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("key_prefix", key_prefix)
        return CompanyRateLimiter(any_redis, budget, **kwargs)  # type: ignore[arg-type]

    return make
