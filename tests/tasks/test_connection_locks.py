"""A feed refresh already running for a connection is skipped; a crashed one blocks nothing."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import fakeredis
import pytest

from config import load_settings
from tasks.connections import LOCK_KEY, _locked


@pytest.fixture
def runtime() -> SimpleNamespace:
    return SimpleNamespace(redis=fakeredis.FakeRedis(decode_responses=True), settings=load_settings({}))


def test_second_refresh_is_skipped_visibly_while_the_first_runs(runtime: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def outer() -> None:
        ran.append("outer")
        with caplog.at_level(logging.INFO, logger="tasks.locks"):
            assert _locked(runtime, "feed", 7, lambda: ran.append("inner")) is False  # type: ignore[arg-type]

    assert _locked(runtime, "feed", 7, outer) is True  # type: ignore[arg-type]
    assert ran == ["outer"]
    assert "connection 7: feed already running elsewhere; skipped" in caplog.text
    # Other connections are not blocked by it, and the lock is gone afterwards.
    assert runtime.redis.get(LOCK_KEY.format(kind="feed", connection_id=7)) is None


def test_a_crashed_refresh_leaves_a_lock_that_expires(runtime: SimpleNamespace) -> None:
    with pytest.raises(RuntimeError):
        _locked(runtime, "feed", 8, lambda: (_ for _ in ()).throw(RuntimeError("boom")))  # type: ignore[arg-type]
    assert runtime.redis.get(LOCK_KEY.format(kind="feed", connection_id=8)) is None  # released on error

    # A worker killed mid-refresh never releases: the lock has a TTL so the next beat tick runs.
    runtime.redis.lock(LOCK_KEY.format(kind="feed", connection_id=9), timeout=1).acquire()
    ttl = runtime.redis.pttl(LOCK_KEY.format(kind="feed", connection_id=9))
    assert 0 < ttl <= 1000
    runtime.redis.delete(LOCK_KEY.format(kind="feed", connection_id=9))  # what expiry does
    assert _locked(runtime, "feed", 9, lambda: None) is True  # type: ignore[arg-type]
    assert runtime.redis.pttl(LOCK_KEY.format(kind="feed", connection_id=9)) == -2


def test_lock_ttl_outlasts_one_feed_fetch(runtime: SimpleNamespace) -> None:
    seen: list[int] = []
    _locked(runtime, "feed", 10, lambda: seen.append(runtime.redis.pttl(LOCK_KEY.format(kind="feed", connection_id=10))))  # type: ignore[arg-type]
    fetch_budget = (runtime.settings.http_connect_timeout + runtime.settings.http_read_timeout) * 1000
    assert seen[0] > fetch_budget
