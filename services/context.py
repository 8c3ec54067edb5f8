"""What the service functions need from the outside world, passed in explicitly.

Tasks build one :class:`SyncDeps` per worker process; tests build their own with fakes.
Nothing in ``services`` reads settings or opens connections by itself.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from models import utcnow
from services.events import EventPublisher

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models import Connection
    from personio.client import PersonioClient
    from services.retention import EmailDigests


class Acquisition(Protocol):
    """Read-only view of a limiter's answer (``ratelimit.Acquisition`` is a frozen dataclass)."""

    @property
    def granted(self) -> bool: ...
    @property
    def wait(self) -> float: ...
    @property
    def locked_out(self) -> bool: ...
    @property
    def remaining(self) -> int: ...


class ObservedLatency(Protocol):
    """Read-only view of ``ratelimit.ObservedLatency``: a company's answer times in seconds."""

    @property
    def mean(self) -> float | None: ...
    @property
    def spread(self) -> float | None: ...


class LatencyTracker(Protocol):
    """Where the step reports Personio's answer times and dispatch reads them (ratelimit.LatencyStats)."""

    def record(self, company: str, endpoint: str, seconds: float) -> None: ...
    def observed(self, company: str) -> ObservedLatency: ...
    def means(self, companies: Sequence[str]) -> dict[str, float | None]: ...


class RateLimiter(Protocol):
    def try_acquire(self, company: str, endpoint: str = ...) -> Acquisition: ...
    def peek(self, company: str, endpoint: str = ...) -> Acquisition: ...
    def lock_out(self, company: str, seconds: float | None = ...) -> None: ...


@dataclass(frozen=True)
class UploadPolicy:
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_cap: float = 600.0
    lockout: float = 60.0
    lease: float = 300.0
    # Upper bound of a company's uploads in flight; below it dispatch adapts the number to the
    # observed latency (services.dispatch.in_flight_cap) when it is given a LatencyTracker.
    company_concurrency: int = 2
    # The budget's requests per second (limit / period), for the in-flight cap.
    budget_per_second: float = 20 / 60
    url_document_max_bytes: int = 20 * 1024 * 1024
    document_url_hosts: tuple[str, ...] = ()
    # With a per-endpoint budget, documents and applications draw from separate windows.
    per_endpoint_budget: bool = False
    # A budget wait this short is slept in the step instead of parking the upload; wake-up
    # timers for the budget fire this much early, so a parked upload is back when its slot frees.
    short_budget_wait: float = 0.05
    # A company answered only 429 for this long: its connection turns rate_limited_sustained.
    rate_limited_alert_after: float = 3600.0


@dataclass
class SyncDeps:
    policy: UploadPolicy
    limiter: RateLimiter
    clients: Callable[[Connection], PersonioClient]
    events: EventPublisher
    # Ask for dispatch_connection(connection_id) to run again after ``delay`` seconds.
    wake: Callable[[int, float], None]
    fetch_document: Callable[[str], bytes]
    # Refresh a connection's jobs cache from its feed (issue: resolve the job at upload time).
    refresh_jobs: Callable[[Session, Connection], object] | None = None
    # Keyed digests of email addresses: the duplicate guard also matches claims whose upload
    # the retention purge reduced (services.retention). None: addresses only.
    email_digests: EmailDigests | None = None
    # Personio's answer times per company (adaptive in-flight cap and limiter margin); None: not kept.
    latency: LatencyTracker | None = None
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
