"""Unit tests for the per-company rate limiter.

Most tests drive the limiter with a fake clock and run on both fakeredis and a real
Redis (embedded 6.2 or ``REDIS_URL``), so the Lua is checked on both engines.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
import redis

from ratelimit import Acquisition, CompanyRateLimiter, RateBudget
from tests.concurrency import run_at_once

if TYPE_CHECKING:
    from tests.ratelimit.conftest import FakeClock, LimiterFactory

# --------------------------------------------------------------------------- the window


def test_grants_exactly_limit_then_denies_until_oldest_slot_frees(
    make_limiter: LimiterFactory, clock: FakeClock
) -> None:
    limiter = make_limiter("3/10s")

    granted = []
    for _ in range(3):
        granted.append(limiter.try_acquire("acme"))
        clock.advance(1)

    assert [a.granted for a in granted] == [True, True, True]
    assert [a.remaining for a in granted] == [2, 1, 0]
    assert all(a.wait == 0.0 and not a.locked_out and a.slot for a in granted)
    denied = limiter.try_acquire("acme")
    # Oldest grant at t=0, now t=3, window 10 s.
    assert denied == Acquisition(granted=False, wait=7.0, locked_out=False, remaining=0)
    assert limiter.usage("acme") == 3


def test_slots_free_as_time_passes(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limiter = make_limiter("3/10s")
    for _ in range(3):
        assert limiter.try_acquire("acme").granted
        clock.advance(1)

    clock.advance(6.999_999)  # t = 9.999999: the t=0 slot is still inside the window
    early = limiter.try_acquire("acme")
    assert not early.granted
    assert early.wait == pytest.approx(1e-6)

    clock.advance(1e-6)  # t = 10: exactly one window after the first grant
    assert limiter.try_acquire("acme").granted
    after = limiter.try_acquire("acme")
    assert not after.granted
    assert after.wait == pytest.approx(1.0)  # the t=1 slot frees at t=11
    assert limiter.usage("acme") == 3

    clock.advance(30)
    assert limiter.usage("acme") == 0
    assert limiter.peek("acme").remaining == 2


def test_margin_widens_the_window(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limiter = make_limiter(RateBudget.parse("2/10s", margin=2.0))
    assert limiter.budget.window == 12.0
    assert limiter.try_acquire("acme").granted
    assert limiter.try_acquire("acme").granted

    clock.advance(10)
    denied = limiter.try_acquire("acme")
    assert not denied.granted
    assert denied.wait == pytest.approx(2.0)

    clock.advance(2)
    assert limiter.try_acquire("acme").granted


def test_denied_wait_is_never_zero(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limiter = make_limiter("1/1s")
    assert limiter.try_acquire("acme").granted
    clock.advance(1 - 1e-6)
    denied = limiter.try_acquire("acme")
    assert not denied.granted
    assert denied.wait > 0


def test_lowered_budget_waits_for_enough_slots_to_free(
    make_limiter: LimiterFactory, clock: FakeClock
) -> None:
    # A deploy that lowers the limit meets a log fuller than the new limit.
    old = make_limiter("3/10s")
    for _ in range(3):
        assert old.try_acquire("acme").granted
        clock.advance(1)

    new = make_limiter("2/10s")
    denied = new.try_acquire("acme")
    # Two of the three must leave: the t=1 slot frees at t=11, now is t=3.
    assert (denied.granted, denied.wait, denied.remaining) == (False, 8.0, 0)
    clock.advance(8)
    assert new.try_acquire("acme").granted


def test_companies_are_independent(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter("2/60s")
    assert limiter.try_acquire("acme").granted
    assert limiter.try_acquire("acme").granted
    assert not limiter.try_acquire("acme").granted

    assert limiter.try_acquire("globex").granted
    assert limiter.usage("globex") == 1


def test_endpoints_share_one_budget_by_default(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter("2/60s")
    assert limiter.try_acquire("acme", "documents").granted
    assert limiter.try_acquire("acme", "applications").granted

    assert not limiter.try_acquire("acme", "documents").granted
    assert not limiter.try_acquire("acme", "applications").granted
    assert limiter.usage("acme", "anything") == 2


def test_per_endpoint_budgets_are_independent(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter("2/60s", per_endpoint=True)
    assert limiter.try_acquire("acme", "documents").granted
    assert limiter.try_acquire("acme", "documents").granted
    assert not limiter.try_acquire("acme", "documents").granted

    applications = limiter.try_acquire("acme", "applications")
    assert applications.granted
    assert applications.remaining == 1
    assert limiter.usage("acme", "documents") == 2
    assert limiter.usage("acme", "applications") == 1


def test_limiter_instances_share_the_budget(make_limiter: LimiterFactory) -> None:
    worker_a, worker_b = make_limiter("2/60s"), make_limiter("2/60s")
    assert worker_a.try_acquire("acme").granted
    assert worker_b.try_acquire("acme").granted
    assert not worker_a.try_acquire("acme").granted
    assert not worker_b.try_acquire("acme").granted


# ------------------------------------------------------------------------------ peek


def test_peek_consumes_nothing_and_matches_try_acquire(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter("2/60s")
    for _ in range(5):
        assert limiter.peek("acme") == Acquisition(
            granted=True, wait=0.0, locked_out=False, remaining=1
        )
    assert limiter.usage("acme") == 0

    first = limiter.try_acquire("acme")
    assert (first.granted, first.remaining) == (True, 1)
    assert limiter.peek("acme").remaining == 0
    assert limiter.try_acquire("acme").granted

    peeked = limiter.peek("acme")
    acquired = limiter.try_acquire("acme")
    assert peeked == acquired
    assert not peeked.granted
    assert limiter.usage("acme") == 2


def test_peek_reports_lock_out(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter("2/60s")
    limiter.lock_out("acme", 5)
    peeked = limiter.peek("acme")
    assert (peeked.granted, peeked.locked_out, peeked.wait) == (False, True, 5.0)
    assert limiter.usage("acme") == 0


# -------------------------------------------------------------------------- lock-out


def test_lock_out_denies_everything_for_its_duration(
    make_limiter: LimiterFactory, clock: FakeClock
) -> None:
    limiter = make_limiter("20/60s")
    limiter.lock_out("acme")  # no Retry-After: the budget's default, one period

    assert limiter.lockout_remaining("acme") == 60.0
    denied = limiter.try_acquire("acme")
    assert denied == Acquisition(granted=False, wait=60.0, locked_out=True, remaining=20)

    clock.advance(59.5)
    denied = limiter.try_acquire("acme")
    assert (denied.granted, denied.locked_out) == (False, True)
    assert denied.wait == pytest.approx(0.5)
    assert limiter.lockout_remaining("acme") == pytest.approx(0.5)

    clock.advance(0.5)
    assert limiter.lockout_remaining("acme") == 0.0
    assert limiter.try_acquire("acme").granted


def test_lock_out_uses_budget_lockout_and_explicit_seconds(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(RateBudget(limit=20, period=60, lockout=45))
    limiter.lock_out("acme")
    assert limiter.lockout_remaining("acme") == 45.0

    limiter.lock_out("globex", 2.5)
    assert limiter.lockout_remaining("globex") == 2.5
    assert limiter.lockout_remaining("initech") == 0.0


def test_lock_out_covers_all_endpoints_and_instances(make_limiter: LimiterFactory) -> None:
    per_endpoint = make_limiter("20/60s", per_endpoint=True)
    shared = make_limiter("20/60s")
    per_endpoint.lock_out("acme", 10)

    for limiter in (per_endpoint, shared):
        for endpoint in ("documents", "applications", "recruiting"):
            denied = limiter.try_acquire("acme", endpoint)
            assert (denied.granted, denied.locked_out, denied.wait) == (False, True, 10.0)
    assert shared.try_acquire("globex").granted


def test_lock_out_never_shortens_a_longer_one(
    make_limiter: LimiterFactory, clock: FakeClock
) -> None:
    limiter = make_limiter("20/60s")
    limiter.lock_out("acme", 30)
    clock.advance(5)

    limiter.lock_out("acme", 5)
    assert limiter.lockout_remaining("acme") == 25.0
    limiter.lock_out("acme", 0)
    assert limiter.lockout_remaining("acme") == 25.0

    limiter.lock_out("acme", 90)
    assert limiter.lockout_remaining("acme") == 90.0


def test_lock_out_rejects_negative_seconds(make_limiter: LimiterFactory) -> None:
    with pytest.raises(ValueError, match="lock-out"):
        make_limiter().lock_out("acme", -1)


def test_wait_covers_both_lock_out_and_full_window(
    make_limiter: LimiterFactory, clock: FakeClock
) -> None:
    limiter = make_limiter("1/60s")
    assert limiter.try_acquire("acme").granted
    limiter.lock_out("acme", 10)

    denied = limiter.try_acquire("acme")
    # Waiting only for the lock-out would meet a full window; the wait covers both.
    assert (denied.locked_out, denied.wait) == (True, 60.0)
    clock.advance(10)
    denied = limiter.try_acquire("acme")
    assert (denied.locked_out, denied.wait) == (False, 50.0)


# --------------------------------------------------------------------------- release


def test_release_gives_back_the_given_slot(
    make_limiter: LimiterFactory, clock: FakeClock
) -> None:
    limiter = make_limiter("2/60s")
    first = limiter.try_acquire("acme")
    clock.advance(1)
    assert limiter.try_acquire("acme").granted

    limiter.release("acme", slot=first.slot)
    assert limiter.usage("acme") == 1
    regained = limiter.try_acquire("acme")
    assert regained.granted
    assert not limiter.try_acquire("acme").granted


def test_release_without_slot_drops_the_newest(
    make_limiter: LimiterFactory, clock: FakeClock
) -> None:
    limiter = make_limiter("2/60s")
    assert limiter.try_acquire("acme").granted
    clock.advance(5)
    assert limiter.try_acquire("acme").granted

    limiter.release("acme")
    clock.advance(1)
    assert limiter.try_acquire("acme").granted
    # The t=0 entry survived, so the window is full until t=60.
    denied = limiter.try_acquire("acme")
    assert denied.wait == pytest.approx(54.0)


def test_release_of_unknown_or_empty_is_harmless(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter("2/60s")
    limiter.release("acme")
    limiter.release("acme", slot="no-such-slot")
    assert limiter.usage("acme") == 0


# ----------------------------------------------------------------------------- keys


def test_keys_carry_short_expiries(
    make_limiter: LimiterFactory, any_redis: redis.Redis, key_prefix: str
) -> None:
    limiter = make_limiter(RateBudget.parse("20/60s", margin=2), clock=None)
    assert limiter.try_acquire("acme").granted
    limiter.lock_out("acme", 30)

    keys = sorted(k.decode() for k in any_redis.scan_iter(match=f"{key_prefix}:*"))
    assert keys == [f"{key_prefix}:{{acme}}:lock", f"{key_prefix}:{{acme}}:log"]
    log_ttl = any_redis.pttl(f"{key_prefix}:{{acme}}:log")
    lock_ttl = any_redis.pttl(f"{key_prefix}:{{acme}}:lock")
    # Window 62 s and lock-out 30 s, each plus a second of slack.
    assert 62_000 < log_ttl <= 63_000
    assert 30_000 < lock_ttl <= 31_001


def test_per_endpoint_key_layout(
    make_limiter: LimiterFactory, any_redis: redis.Redis, key_prefix: str
) -> None:
    limiter = make_limiter("20/60s", per_endpoint=True)
    limiter.try_acquire("acme", "documents")
    limiter.try_acquire("acme", "applications")
    keys = sorted(k.decode() for k in any_redis.scan_iter(match=f"{key_prefix}:*"))
    assert keys == [
        f"{key_prefix}:{{acme}}:log:applications",
        f"{key_prefix}:{{acme}}:log:documents",
    ]


def test_idle_company_leaves_no_keys_behind(real_redis: redis.Redis, key_prefix: str) -> None:
    limiter = CompanyRateLimiter(real_redis, RateBudget.parse("2/100ms"), key_prefix=key_prefix)
    assert limiter.try_acquire("acme").granted
    limiter.lock_out("acme", 0.05)
    assert len(list(real_redis.scan_iter(match=f"{key_prefix}:*"))) == 2

    deadline = time.monotonic() + 5
    while list(real_redis.scan_iter(match=f"{key_prefix}:*")):
        assert time.monotonic() < deadline, "rate limiter keys did not expire"
        time.sleep(0.05)


def test_rejects_empty_company(make_limiter: LimiterFactory) -> None:
    with pytest.raises(ValueError, match="company"):
        make_limiter().try_acquire("")


# ---------------------------------------------------------------------- server clock


@pytest.mark.parametrize("backend", ["fake_redis", "real_redis"])
def test_server_clock_mode(
    backend: str, request: pytest.FixtureRequest, key_prefix: str
) -> None:
    client: redis.Redis = request.getfixturevalue(backend)
    limiter = CompanyRateLimiter(client, RateBudget.parse("2/1s"), key_prefix=key_prefix)

    first = limiter.try_acquire("acme")
    assert first.granted and first.slot is not None
    server_now_us = client.time()[0] * 1_000_000 + client.time()[1]
    # The slot is stamped with the server's clock, not this host's.
    assert abs(int(first.slot.split("-")[0]) - server_now_us) < 5_000_000
    assert limiter.try_acquire("acme").granted
    denied = limiter.try_acquire("acme")
    assert not denied.granted
    assert 0 < denied.wait <= 1.0

    limiter.lock_out("acme", 5)
    assert 4.0 < limiter.lockout_remaining("acme") <= 5.0


def test_decode_responses_client(fake_redis: redis.Redis, clock: FakeClock) -> None:
    client = redis.Redis(connection_pool=fake_redis.connection_pool, decode_responses=True)
    limiter = CompanyRateLimiter(client, RateBudget.parse("1/1s"), clock=clock)
    granted = limiter.try_acquire("acme")
    assert granted.granted and isinstance(granted.slot, str)
    assert not limiter.try_acquire("acme").granted


def test_threads_never_overshoot(real_redis: redis.Redis, key_prefix: str) -> None:
    limiter = CompanyRateLimiter(real_redis, RateBudget.parse("25/60s"), key_prefix=key_prefix)
    grants: list[Acquisition] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            acquisition = limiter.try_acquire("acme")
            if acquisition.granted:
                with lock:
                    grants.append(acquisition)

    assert run_at_once(worker, 8) == []

    assert len(grants) == 25
    assert len({g.slot for g in grants}) == 25
    assert limiter.usage("acme") == 25


# ---------------------------------------------------------------------------- budget


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("20/60s", 20, 60.0),
        ("20/60", 20, 60.0),
        ("20/2s", 20, 2.0),
        ("20/500ms", 20, 0.5),
        ("20/1m", 20, 60.0),
        ("20/m", 20, 60.0),
        ("100/1h", 100, 3600.0),
        ("10/0.5s", 10, 0.5),
        (" 20 / 60 s ", 20, 60.0),
    ],
)
def test_parse_accepts(text: str, limit: int, period: float) -> None:
    budget = RateBudget.parse(text)
    assert (budget.limit, budget.period, budget.margin, budget.lockout) == (
        limit,
        pytest.approx(period),
        0.0,
        None,
    )


def test_parse_margin_and_defaults() -> None:
    budget = RateBudget.parse("20/60s", margin=2.0)
    assert budget == RateBudget(limit=20, period=60.0, margin=2.0)
    assert budget.window == 62.0
    assert budget.lockout_seconds == 60.0
    assert RateBudget(20, 60, lockout=90).lockout_seconds == 90


@pytest.mark.parametrize(
    "text",
    ["", "20", "20/", "/60", "abc", "20/60x", "20/60 sec", "20.5/60", "-1/60", "20/-1", "20/1d"],
)
def test_parse_rejects_bad_format(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid rate budget .*expected '<limit>/<period>"):
        RateBudget.parse(text)


@pytest.mark.parametrize("text", ["0/60s", "20/0", "20/0ms"])
def test_parse_rejects_non_positive_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RateBudget.parse(text)


def test_parse_rejects_negative_margin() -> None:
    with pytest.raises(ValueError, match="margin"):
        RateBudget.parse("20/60s", margin=-1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0, "period": 60}, "limit"),
        ({"limit": True, "period": 60}, "limit"),
        ({"limit": 20, "period": 0}, "period"),
        ({"limit": 20, "period": 60, "margin": -0.1}, "margin"),
        ({"limit": 20, "period": 60, "lockout": 0}, "lockout"),
    ],
)
def test_budget_validates_fields(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RateBudget(**kwargs)  # type: ignore[arg-type]
