"""Periodic tasks: the pump (dispatch due work) and the reconciler (recover lost work)."""

from __future__ import annotations

import logging
from datetime import timedelta

import redis
from celery import shared_task

from config.names import PUMP_LOCK_KEY, RETENTION_LOCK_KEY, RETENTION_TASK, WAKE_KEY
from models import utcnow
from services.dispatch import due_connections, reclaim_expired_leases
from services.retention import PurgeCounts, run_retention, trim_event_stream
from tasks.dispatching import dispatch_now
from tasks.locks import exclusively
from worker.runtime import get_runtime

log = logging.getLogger(__name__)

# Longer than a retention run may take (services.retention.run_retention stops after 300 s).
RETENTION_LOCK_SECONDS = 900


@shared_task(name="personio_sync.dispatch_connection", acks_late=True)
def dispatch_connection_task(connection_id: int) -> None:
    get_runtime().redis.delete(WAKE_KEY.format(connection_id=connection_id))
    dispatch_now(connection_id)


@shared_task(name="personio_sync.pump", acks_late=True)
def pump() -> int:
    """Dispatch every connection that has uploads due now and a free slot.

    One pump at a time: a tick that finds the previous one still running is skipped,
    so slow ticks never pile up on each other.
    """
    runtime = get_runtime()
    dispatched = 0

    def work() -> None:
        nonlocal dispatched
        with runtime.session() as session:
            policy = runtime.upload_policy
            connection_ids = due_connections(
                session, utcnow(), concurrency=policy.company_concurrency, latency=runtime.latency, rate=policy.budget_per_second
            )
        dispatched = sum(dispatch_now(connection_id) for connection_id in connection_ids)

    exclusively(runtime.redis, PUMP_LOCK_KEY, ttl=max(runtime.settings.pump_interval * 10, 30), what="pump", work=work)
    return dispatched


@shared_task(name="personio_sync.relay_events", acks_late=True)
def relay_events() -> int:
    """Send committed events from the outbox to the stream: whatever the relay after each task missed.

    Redis down at that moment, a relay already busy, a worker killed in between: the events
    wait in the outbox and go out here. Two relays never send the same events at once.
    """
    return get_runtime().relay_events()


@shared_task(name="personio_sync.reconcile", acks_late=True)
def reconcile() -> int:
    """Queue again the uploads whose work was lost (their lease expired)."""
    runtime = get_runtime()
    with runtime.session() as session:
        return reclaim_expired_leases(session, utcnow())


@shared_task(name=RETENTION_TASK, acks_late=True)
def purge_personal_data() -> dict[str, int]:
    """Delete document bytes of finished uploads, reduce uploads past the retention period, trim old events (counts only)."""
    runtime = get_runtime()
    totals = PurgeCounts()
    retention = timedelta(days=runtime.settings.retention_days)

    def work() -> None:
        totals.add(
            run_retention(
                runtime.session,
                now=utcnow,
                retention=retention,
                digests=runtime.email_digests,
                events_for=runtime.events_for,
            )
        )

    ran = exclusively(runtime.redis, RETENTION_LOCK_KEY, ttl=RETENTION_LOCK_SECONDS, what="retention purge", work=work)
    trimmed = 0
    if ran:
        try:
            trimmed = trim_event_stream(runtime.redis, runtime.settings.events_stream, now=utcnow(), retention=retention)
        except redis.RedisError as error:  # the next run trims them
            log.warning("retention: events stream not trimmed (%s)", type(error).__name__)
    return {**totals.as_dict(), "stream_events": trimmed}
