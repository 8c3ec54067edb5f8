"""What the service functions need from the outside world, passed in explicitly.

Tasks build one :class:`SyncDeps` per worker process; tests build their own with fakes.
Nothing in ``services`` reads settings or opens connections by itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from models import utcnow
from services.events import EventPublisher

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models import Connection
    from personio.client import PersonioClient


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
    company_concurrency: int = 2
    url_document_max_bytes: int = 20 * 1024 * 1024
    document_url_hosts: tuple[str, ...] = ()
    # With a per-endpoint budget, documents and applications draw from separate windows.
    per_endpoint_budget: bool = False


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
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)
