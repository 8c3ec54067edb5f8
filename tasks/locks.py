"""Running periodic work at most once at a time across every worker."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)


def exclusively(client: redis.Redis, key: str, *, ttl: float, what: str, work: Callable[[], None]) -> bool:
    """Run ``work`` under a non-blocking Redis lock; skip (and log it) when it is held.

    The lock has a TTL, so a worker killed mid-run leaves nothing that blocks the next run.
    """
    lock = client.lock(key, timeout=ttl, blocking=False)
    if not lock.acquire(blocking=False):
        log.info("%s already running elsewhere; skipped", what)
        return False
    try:
        work()
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("%s took longer than its lock (%ss); the lock had expired", what, ttl)
    return True
