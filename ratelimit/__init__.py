"""Per-company Personio rate budget shared by all workers through Redis."""

from __future__ import annotations

from ratelimit.latency import LatencyStats, ObservedLatency
from ratelimit.limiter import Acquisition, CompanyRateLimiter, RateBudget, parse_rate

__all__ = ["Acquisition", "CompanyRateLimiter", "LatencyStats", "ObservedLatency", "RateBudget", "parse_rate"]
