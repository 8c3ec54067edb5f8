"""One Personio rate budget per company, shared by every worker process through Redis.

Personio allows 20 requests per 60 s per company on the recruiting endpoints and answers
a 429 with a 60 s lock-out and no ``Retry-After`` (docs/personio.md, "Rate limit and
lock-out"). Many Celery processes on several hosts submit for the same company, so the
budget has to live in Redis and every decision has to be atomic there.

Why a sliding log, and why widened (docs/reliability.md, "Shared rate limit"):

* Celery's ``rate_limit`` is per worker instance (a token bucket of capacity 1), so N
  workers get N times the budget; a "global" limit needs a single-consumer queue.
* A fixed-window counter lets a burst straddle the server's window. A sliding log (one
  sorted-set entry per request, scored by time) is exact: it never admits more than
  ``limit`` requests in any window of its length.
* Exact on *our* clock is not exact on Personio's: a request's one-way latency varies,
  so two requests sent 60 s apart can arrive 58.5 s apart. In the measured simulation
  (latency 50-1500 ms, server sliding 60 s), a log of 20/60 s reached 0.57 of the limit
  with 111 429s per 4 h, and trimming the count to 19/60 s barely helped (0.60, 106
  429s). Widening the *window* by the latency spread, 20/62 s, reached 0.97 with zero
  429s. ``RateBudget.margin`` is that widening: set it to the latency spread (max - min
  one-way latency, e.g. p99.9 - p0.1), about 2 s for Personio, i.e. 20 per 62 s.
* A fixed 2 s caps utilisation at 60/62 = 0.968 even when Personio answers steadily. With
  ``RateBudget.margin_floor`` set, the margin follows each company's measured spread of answer
  times (p95 - p5 of the last answers, ``ratelimit.latency``), clamped to [floor, margin]; the
  configured margin stays the ceiling and the fallback. An answer time runs from taking the
  slot to the answer, so it contains the slot-to-arrival delay whose spread matters, plus the
  server's work and the way back, which only widen it.

Each call runs one Lua script (EVALSHA) that reads the lock-out key, trims the log,
counts it and appends to it; nothing is read in Python and written back, so concurrent
workers cannot both take the last slot. Time comes from the Redis server (``TIME``)
so hosts with skewed clocks still agree; tests inject a clock instead. Scores are
integer microseconds, which a double holds exactly, and every number written from Lua
goes through ``string.format('%.0f')`` so no Lua version rounds it to 14 digits.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ratelimit.latency import latency_key

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["Acquisition", "CompanyRateLimiter", "RateBudget", "parse_rate"]

_MICROS = 1_000_000

# Keys outlive their window (or lock-out) by this much before Redis drops them, so an idle
# company leaves nothing behind soon after. Decisions compare stored timestamps, never key
# existence, so the slack only has to cover rounding with the server's clock. An injected
# clock (tests) can run slower than the real one PEXPIRE uses, so it gets far more.
_EXPIRY_SLACK_MS = 1_000
_INJECTED_CLOCK_EXPIRY_SLACK_MS = 600_000

# Both scripts start here: ``now`` in µs from ARGV[1], or the server's TIME when it is ''.
_NOW_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
"""

# KEYS[1] = request log (sorted set, score = µs), KEYS[2] = lock-out (string, value = µs
# at which it ends), KEYS[3] = the company's answer times (ratelimit.latency). ARGV: now µs
# or '' for server TIME, widest window µs (period + margin), limit, '1' to take a slot / '0'
# to only look, nonce for the member, log expiry ms, period µs, margin floor µs ('' = the
# margin is fixed). Returns {granted, wait µs, locked out, remaining, used, member, window µs}.
_ACQUIRE_LUA = _NOW_LUA + """
local widest = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local take = ARGV[4] == '1'
local window = widest
if ARGV[8] ~= '' then
  -- Adaptive margin: the observed spread of answer times, at least the floor, at most the
  -- configured margin, which is also the fallback while nothing has been observed.
  local spread = tonumber(redis.call('HGET', KEYS[3], 'spread') or '')
  if spread then
    local period = tonumber(ARGV[7])
    window = period + math.min(math.max(spread, tonumber(ARGV[8])), widest - period)
  end
end
local floor = string.format('%.0f', now - window)

local lock_wait = 0
local lock_until = tonumber(redis.call('GET', KEYS[2]) or '0')
if lock_until > now then
  lock_wait = lock_until - now
end

-- Only a real acquisition writes; a peek must leave the log exactly as it found it. The
-- log keeps the widest window, so a margin that grows again still sees every entry.
if take then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - widest))
end
local used = redis.call('ZCOUNT', KEYS[1], '(' .. floor, '+inf')

-- The slot that frees next is the one whose departure brings the count below the limit;
-- usually the oldest, later ones if the log holds more than the limit (budget lowered).
local window_wait = 0
if used >= limit then
  local entry = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. floor, '+inf',
                           'WITHSCORES', 'LIMIT', used - limit, 1)
  window_wait = tonumber(entry[2]) + window - now
end

if lock_wait > 0 or window_wait > 0 then
  local locked = 0
  if lock_wait > 0 then locked = 1 end
  local remaining = limit - used
  if remaining < 0 then remaining = 0 end
  return {0, string.format('%.0f', math.max(lock_wait, window_wait)), locked,
          remaining, used, '', string.format('%.0f', window)}
end

local member = ''
if take then
  local score = string.format('%.0f', now)
  member = score .. '-' .. ARGV[5]
  redis.call('ZADD', KEYS[1], score, member)
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
return {1, '0', 0, limit - used - 1, used, member, string.format('%.0f', window)}
"""

# KEYS[1] = lock-out key. ARGV: now µs or '', duration µs ('0' = only read), expiry slack ms.
# Returns the lock-out remaining in µs after the call (as a string, to keep precision).
_LOCK_LUA = _NOW_LUA + """
local duration = tonumber(ARGV[2])
local lock_until = tonumber(redis.call('GET', KEYS[1]) or '0')
-- A later 429 may carry a shorter Retry-After; never let it cut an earlier, longer lock.
if duration > 0 and now + duration > lock_until then
  lock_until = now + duration
  redis.call('SET', KEYS[1], string.format('%.0f', lock_until),
             'PX', string.format('%.0f', math.ceil(duration / 1000) + tonumber(ARGV[3])))
end
if lock_until <= now then
  return '0'
end
return string.format('%.0f', lock_until - now)
"""

_PARSE_RE = re.compile(
    r"^\s*(?P<limit>\d+)\s*/\s*(?P<amount>\d+(?:\.\d+)?)?\s*(?P<unit>ms|s|m|h)?\s*$"
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_EXPECTED_FORMAT = (
    "expected '<limit>/<period>[ms|s|m|h]', e.g. '20/60s', '20/60', '20/500ms' or '20/1m'"
)


def parse_rate(text: str) -> tuple[int, float]:
    """Parse ``"20/60s"``-style text into (limit, period in seconds).

    The one parser of rate texts: :meth:`RateBudget.parse`, ``PERSONIO_RATE_LIMIT`` and the
    stand-in's ``--rate-limit`` all use it. A bare period is seconds; a unit without an
    amount means one of it (``"20/m"`` is per minute).

    Raises:
        ValueError: the text is not in the expected format or the numbers are not positive.
    """
    match = _PARSE_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid rate budget {text!r}: {_EXPECTED_FORMAT}")
    amount, unit = match["amount"], match["unit"]
    if amount is None and unit is None:
        raise ValueError(f"invalid rate budget {text!r}: missing period; {_EXPECTED_FORMAT}")
    period = float(amount if amount is not None else 1) * _UNIT_SECONDS[unit or "s"]
    limit = int(match["limit"])
    if limit < 1 or period <= 0:
        raise ValueError(
            f"invalid rate budget {text!r}: limit and period must be positive; "
            f"{_EXPECTED_FORMAT}"
        )
    return limit, period


@dataclass(frozen=True)
class RateBudget:
    """At most ``limit`` requests per ``period + margin`` seconds, and the 429 penalty.

    With ``margin_floor`` set the margin adapts per company: the observed spread of Personio's
    answer times (``ratelimit.latency``), never below ``margin_floor`` and never above
    ``margin``, which stays the fallback while a company has no observations. Without it the
    margin is fixed.
    """

    limit: int
    period: float
    margin: float = 0.0
    lockout: float | None = None
    margin_floor: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"rate budget limit must be an integer >= 1, got {self.limit!r}")
        if not math.isfinite(self.period) or self.period <= 0:
            raise ValueError(f"rate budget period must be > 0 seconds, got {self.period!r}")
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ValueError(f"rate budget margin must be >= 0 seconds, got {self.margin!r}")
        if self.lockout is not None and (not math.isfinite(self.lockout) or self.lockout <= 0):
            raise ValueError(f"rate budget lockout must be > 0 seconds, got {self.lockout!r}")
        if self.margin_floor is not None and (
            not math.isfinite(self.margin_floor) or not 0 <= self.margin_floor <= self.margin
        ):
            raise ValueError(
                f"rate budget margin floor must be between 0 and the margin ({self.margin!r}) seconds, "
                f"got {self.margin_floor!r}"
            )

    @property
    def window(self) -> float:
        """Seconds the sliding log looks back at most: the period widened by the whole margin."""
        return self.period + self.margin

    def margin_for(self, spread: float | None) -> float:
        """The margin used for a company whose answer times spread by ``spread`` seconds."""
        if self.margin_floor is None or spread is None:
            return self.margin
        return min(max(spread, self.margin_floor), self.margin)

    @property
    def lockout_seconds(self) -> float:
        """Lock-out after a 429 without Retry-After; Personio documents one period."""
        return self.period if self.lockout is None else self.lockout

    @classmethod
    def parse(cls, text: str, *, margin: float | None = None) -> RateBudget:
        """Parse ``"20/60s"``-style text; a bare number is seconds, ``"20/m"`` is per minute.

        Raises:
            ValueError: the text is not in the expected format or the numbers are out of range.
        """
        limit, period = parse_rate(text)
        return cls(limit=limit, period=period, margin=0.0 if margin is None else margin)


@dataclass(frozen=True)
class Acquisition:
    """The answer to one request for a slot.

    ``slot`` is the log entry taken on a grant (``"<server µs>-<random hex>"``); pass it to
    :meth:`CompanyRateLimiter.release` to give exactly that slot back.
    """

    granted: bool
    wait: float
    locked_out: bool
    remaining: int
    slot: str | None = None
    # Seconds the log looked back for this answer (period + margin); informative, so not compared.
    window: float | None = field(default=None, compare=False)


class CompanyRateLimiter:
    """Sliding-log limiter per Personio company (and optionally endpoint), stored in Redis.

    Holds no state besides configuration, so any number of instances in any number of
    processes can share one Redis and one budget.
    """

    def __init__(
        self,
        redis: Redis,
        budget: RateBudget,
        *,
        key_prefix: str = "personio-sync:rl",
        per_endpoint: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._redis = redis
        self._budget = budget
        self._key_prefix = key_prefix
        self._per_endpoint = per_endpoint
        self._clock = clock
        self._window_us = _to_micros(budget.window)
        self._period_us = _to_micros(budget.period)
        self._floor_arg = "" if budget.margin_floor is None else str(_to_micros(budget.margin_floor))
        self._expiry_slack_ms = (
            _EXPIRY_SLACK_MS if clock is None else _INJECTED_CLOCK_EXPIRY_SLACK_MS
        )
        self._log_ttl_ms = math.ceil(budget.window * 1000) + self._expiry_slack_ms
        self._acquire_script = redis.register_script(_ACQUIRE_LUA)
        self._lock_script = redis.register_script(_LOCK_LUA)

    @property
    def budget(self) -> RateBudget:
        return self._budget

    def try_acquire(self, company: str, endpoint: str = "recruiting") -> Acquisition:
        """Take a slot if the company is not locked out and its window has room; never blocks."""
        acquisition, _ = self._run(company, endpoint, take=True)
        return acquisition

    def peek(self, company: str, endpoint: str = "recruiting") -> Acquisition:
        """Answer as :meth:`try_acquire` would at this instant, without taking a slot."""
        acquisition, _ = self._run(company, endpoint, take=False)
        return acquisition

    def usage(self, company: str, endpoint: str = "recruiting") -> int:
        """Slots used in the current window."""
        _, used = self._run(company, endpoint, take=False)
        return used

    def lock_out(self, company: str, seconds: float | None = None) -> None:
        """Lock every endpoint of ``company`` after a 429, for Retry-After or the budget's default.

        An existing longer lock-out is kept; this only ever extends it.
        """
        duration = self._budget.lockout_seconds if seconds is None else seconds
        if not math.isfinite(duration) or duration < 0:
            raise ValueError(f"lock-out must be >= 0 seconds, got {duration!r}")
        duration_us = _to_micros(duration)
        if duration_us <= 0:
            return
        self._lock_script(
            keys=[self._lock_key(company)],
            args=[self._now_arg(), duration_us, self._expiry_slack_ms],
        )

    def lockout_remaining(self, company: str) -> float:
        """Seconds until the company's lock-out ends; 0.0 when it is not locked out."""
        remaining = self._lock_script(
            keys=[self._lock_key(company)], args=[self._now_arg(), 0, self._expiry_slack_ms]
        )
        return int(remaining) / _MICROS

    def release(
        self, company: str, endpoint: str = "recruiting", slot: str | None = None
    ) -> None:
        """Give a slot back when its request never left this host (e.g. connection refused).

        With ``slot`` (from :attr:`Acquisition.slot`) exactly that entry is removed; without
        it the newest entry goes, which may be another worker's if one acquired since.
        Only release requests that certainly did not reach Personio: a request that did
        counts against its budget whatever its outcome.
        """
        key = self._log_key(company, endpoint)
        if slot is not None:
            self._redis.zrem(key, slot)
        else:
            self._redis.zpopmax(key)

    def _run(self, company: str, endpoint: str, *, take: bool) -> tuple[Acquisition, int]:
        reply: list[Any] = self._acquire_script(
            keys=[
                self._log_key(company, endpoint),
                self._lock_key(company),
                latency_key(self._key_prefix, company),
            ],
            args=[
                self._now_arg(),
                self._window_us,
                self._budget.limit,
                "1" if take else "0",
                uuid.uuid4().hex,
                self._log_ttl_ms,
                self._period_us,
                self._floor_arg,
            ],
        )
        granted, wait_us, locked, remaining, used, member, window_us = reply
        slot = member.decode() if isinstance(member, bytes) else member
        acquisition = Acquisition(
            granted=bool(int(granted)),
            wait=int(wait_us) / _MICROS,
            locked_out=bool(int(locked)),
            remaining=int(remaining),
            slot=slot or None,
            window=int(window_us) / _MICROS,
        )
        return acquisition, int(used)

    def _now_arg(self) -> str:
        # Empty means "ask the Redis server", so every host uses the same clock.
        return "" if self._clock is None else str(_to_micros(self._clock()))

    def _lock_key(self, company: str) -> str:
        return f"{self._company_prefix(company)}:lock"

    def _log_key(self, company: str, endpoint: str) -> str:
        base = f"{self._company_prefix(company)}:log"
        return f"{base}:{endpoint}" if self._per_endpoint else base

    def _company_prefix(self, company: str) -> str:
        if not company:
            raise ValueError("company must be a non-empty string")
        # The hash tag keeps a company's log and lock-out in one Redis Cluster slot, which
        # a script touching both requires.
        return f"{self._key_prefix}:{{{company}}}"


def _to_micros(seconds: float) -> int:
    return round(seconds * _MICROS)
