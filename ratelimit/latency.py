"""How long Personio takes to answer each company, shared by every worker process through Redis.

Two decisions follow the observed answer times instead of fixed guesses:

* how many uploads of a company may be in flight (``services.dispatch``, Little's law:
  in flight = request rate x time per request), from the mean answer time;
* how much the sliding window is widened (``ratelimit.limiter``), from the spread of the
  answer times.

One small hash per company (``<prefix>:{company}:lat``, in the same Redis Cluster slot as the
company's request log, so the limiter's script can read it) holds:

* ``s0`` .. ``s<N-1>``: a ring of the last N answer times in µs, every endpoint together;
* ``n``: how many answers were recorded (the ring's write position);
* ``ewma``: exponentially weighted mean answer time of every endpoint together, and
  ``ewma:<endpoint>`` the same per endpoint (documents, applications);
* ``spread``: p95 - p5 of the ring once it holds ``min_samples`` answers.

An answer time is measured from the moment the request took its rate-limit slot to the moment
its answer arrived: everything between taking the slot and Personio counting the request
(our commit, the network) lies inside it. The hash expires after ``ttl`` without answers, so a
company that went quiet starts again from the configured fallbacks. Everything is updated in
one Lua script, so concurrent workers never lose each other's samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis

__all__ = ["LatencyStats", "ObservedLatency", "latency_key"]

_MICROS = 1_000_000

# KEYS[1] = the company's latency hash. ARGV: endpoint, sample µs, EWMA weight of a new sample,
# ring size, minimum samples for a spread, expiry ms.
_RECORD_LUA = """
local sample = tonumber(ARGV[2])
local alpha = tonumber(ARGV[3])
local size = tonumber(ARGV[4])
local min_samples = tonumber(ARGV[5])
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 's' .. ((n - 1) % size), string.format('%.0f', sample))
for _, field in ipairs({'ewma', 'ewma:' .. ARGV[1]}) do
  local old = tonumber(redis.call('HGET', KEYS[1], field) or '')
  local value = sample
  if old then value = old + alpha * (sample - old) end
  redis.call('HSET', KEYS[1], field, string.format('%.0f', value))
end
local count = math.min(n, size)
if count >= min_samples then
  local fields = {}
  for i = 0, count - 1 do fields[#fields + 1] = 's' .. i end
  local values = {}
  for _, v in ipairs(redis.call('HMGET', KEYS[1], unpack(fields))) do
    if v then values[#values + 1] = tonumber(v) end
  end
  table.sort(values)
  -- Nearest ranks, rounded outwards: the spread is never narrower than p95 - p5.
  local low = values[math.floor(0.05 * (#values - 1)) + 1]
  local high = values[math.ceil(0.95 * (#values - 1)) + 1]
  redis.call('HSET', KEYS[1], 'spread', string.format('%.0f', high - low))
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return n
"""


def latency_key(key_prefix: str, company: str) -> str:
    """The company's latency hash; the hash tag matches the limiter's keys (one Cluster slot)."""
    if not company:
        raise ValueError("company must be a non-empty string")
    return f"{key_prefix}:{{{company}}}:lat"


@dataclass(frozen=True)
class ObservedLatency:
    """What is known about one company's answer times (seconds); ``None`` while nothing is."""

    mean: float | None
    spread: float | None
    samples: int
    by_endpoint: dict[str, float]


class LatencyStats:
    """Recent Personio answer times per company and endpoint, kept in Redis (see the module doc)."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str = "personio-sync:rl",
        ring_size: int = 64,
        min_samples: int = 8,
        weight: float = 0.2,
        ttl: float = 3600.0,
    ) -> None:
        if ring_size < 2 or not 1 <= min_samples <= ring_size:
            raise ValueError("need ring_size >= 2 and 1 <= min_samples <= ring_size")
        if not 0 < weight <= 1 or not math.isfinite(ttl) or ttl <= 0:
            raise ValueError("need 0 < weight <= 1 and ttl > 0")
        self._redis = redis
        self._key_prefix = key_prefix
        self._ring_size = ring_size
        self._min_samples = min_samples
        self._weight = weight
        self._ttl_ms = math.ceil(ttl * 1000)
        self._record_script = redis.register_script(_RECORD_LUA)

    @property
    def key_prefix(self) -> str:
        return self._key_prefix

    def key(self, company: str) -> str:
        return latency_key(self._key_prefix, company)

    def record(self, company: str, endpoint: str, seconds: float) -> None:
        """Add one answer time (seconds from taking the slot to the answer)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"an answer time must be >= 0 seconds, got {seconds!r}")
        self._record_script(
            keys=[self.key(company)],
            args=[endpoint, round(seconds * _MICROS), self._weight, self._ring_size, self._min_samples, self._ttl_ms],
        )

    def means(self, companies: Sequence[str]) -> dict[str, float | None]:
        """The mean answer time (EWMA) of each company, None where nothing is observed; one round trip."""
        pipeline = self._redis.pipeline(transaction=False)
        for company in companies:
            pipeline.hget(self.key(company), "ewma")
        return {company: _seconds(value) for company, value in zip(companies, pipeline.execute(), strict=True)}

    def observed(self, company: str) -> ObservedLatency:
        """The company's mean answer time (EWMA), spread (p95 - p5) and per-endpoint means."""
        raw: dict[Any, Any] = self._redis.hgetall(self.key(company))  # type: ignore[assignment]  # sync client
        fields = {_text(k): _text(v) for k, v in raw.items()}
        by_endpoint = {
            name.removeprefix("ewma:"): int(value) / _MICROS for name, value in fields.items() if name.startswith("ewma:")
        }
        return ObservedLatency(
            mean=int(fields["ewma"]) / _MICROS if "ewma" in fields else None,
            spread=int(fields["spread"]) / _MICROS if "spread" in fields else None,
            samples=int(fields.get("n", 0)),
            by_endpoint=by_endpoint,
        )


def _seconds(value: bytes | str | None) -> float | None:
    return None if value is None else int(_text(value)) / _MICROS


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
