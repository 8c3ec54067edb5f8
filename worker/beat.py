"""The beat scheduler: RedBeat, kept alive through a Redis restart.

RedBeat keeps the schedule and a lock in Redis so that only one beat fires. Its scheduler
(celery-redbeat 2.4) extends that lock at the start of every tick with nothing around it:

* a Redis that is away (killed, restarting, still loading its AOF) makes ``lock.extend``
  raise ``redis.ConnectionError``, which leaves ``Service.start`` and ends the process;
* a lock that expired while Redis was away (an outage longer than the lock timeout, or a
  restart that lost the key) makes it raise ``LockNotOwnedError``, with the same result;
* a lock that could not be taken at start (Redis away then; Celery swallows the error of the
  ``beat_init`` handler) leaves ``scheduler.lock`` at None: ``AttributeError`` on the first tick.

``redbeat_redis_options={"retry_period": ...}`` does not help: it retries calls made on the
client, but the lock object holds the bare client (sibson/redbeat#285, #314).

This scheduler waits instead. While Redis is unreachable it fires nothing (the broker is the
same Redis) and tries again every ``max_interval``; it logs the outage once and the recovery
once. A lock it no longer owns is taken again without blocking — when another beat took it
meanwhile, this one stands by and keeps trying, as a second beat does at start — and on
taking it again it re-installs the static schedule, which a Redis without the old data no
longer has (``setup_schedule`` keeps every entry's ``last_run_at`` that is still there).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery.utils.log import get_logger
from redbeat import schedulers as redbeat
from redis.exceptions import LockError

logger = get_logger("celery.beat")

# BusyLoadingError (Redis is loading its AOF) and MasterNotFoundError are ConnectionErrors.
REDIS_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


class RedBeatScheduler(redbeat.RedBeatScheduler):
    max_interval: float  # set by celery's Scheduler; declared here because redbeat is untyped
    _unreachable_since: float | None = None
    _standing_by = False
    _schedule_missing = False

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            if not self._hold_lock():
                interval = self.max_interval  # standing by
            else:
                try:
                    interval = super().tick(min=min, **kwargs)  # extends the lock first
                except LockError:
                    # Gone, or someone else's: nothing was sent this tick.
                    logger.warning("beat: lost the lock %s (it expired while Redis was away, or Redis lost it); taking it again", self.lock_key)
                    self.lock = None
                    interval = super().tick(min=min, **kwargs) if self._hold_lock() else self.max_interval
        except REDIS_UNREACHABLE as exc:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
                logger.warning("beat: Redis is unreachable (%s); nothing is sent until it is back, retrying every %g s", exc, self.max_interval)
            else:
                logger.debug("beat: Redis still unreachable", exc_info=True)
            return self.max_interval
        if self._unreachable_since is not None:
            logger.info("beat: Redis is reachable again after %.0f s", time.monotonic() - self._unreachable_since)
            self._unreachable_since = None
        return interval

    def _hold_lock(self) -> bool:
        """Whether this beat may fire: it holds the lock, or just took it (without waiting)."""
        if self.lock_key and self.lock is None:
            if not self._take_lock():
                return False
            self._schedule_missing = True
        if self._schedule_missing:
            # A Redis that restarted without its data lost the schedule with the lock.
            self.setup_schedule()
            self._schedule_missing = False
        return True

    def _take_lock(self) -> bool:
        """RedBeat's start-up acquisition (``acquire_distributed_beat_lock``), without blocking."""
        client = redbeat.get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        # RedBeat's script: extend *to* the timeout rather than *by* it.
        lock.lua_extend = client.register_script(redbeat.LUA_EXTEND_TO_SCRIPT)
        if not lock.acquire(blocking=False):
            if not self._standing_by:
                logger.warning("beat: the lock %s is held by another beat; standing by", self.lock_key)
                self._standing_by = True
            return False
        self.lock = lock
        self._standing_by = False
        logger.info("beat: took the lock %s", self.lock_key)
        return True

    def close(self) -> None:
        """Release the lock if Redis answers; otherwise it expires by itself after ``lock_timeout``."""
        lock, self.lock = self.lock, None
        if lock is not None:
            logger.info("beat: Releasing lock")
            try:
                if lock.owned():
                    lock.release()
            except (*REDIS_UNREACHABLE, LockError) as exc:
                logger.warning("beat: could not release the lock %s (%s); it expires within %s s", self.lock_key, exc, self.lock_timeout)
        # RedBeat's own close() only releases the lock (done above); then Celery's.
        super(redbeat.RedBeatScheduler, self).close()
