"""Beat tasks that keep every connection's jobs cache and health fresh.

A refresh already running for a connection is skipped (and logged): a Redis lock with a
TTL guards each connection, so a crashed refresh leaves nothing behind that blocks the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.names import CONNECTION_LOCK_KEY
from models import Connection, utcnow
from services.health import check_connection
from tasks.dispatching import dispatch_now
from tasks.locks import exclusively
from worker.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

LOCK_KEY = CONNECTION_LOCK_KEY


def _locked(runtime: Runtime, kind: str, connection_id: int, work: Callable[[], None]) -> bool:
    ttl = int(runtime.settings.http_connect_timeout + runtime.settings.http_read_timeout) * 2 + 30
    key = LOCK_KEY.format(kind=kind, connection_id=connection_id)
    return exclusively(runtime.redis, key, ttl=ttl, what=f"connection {connection_id}: {kind}", work=work)


def _with_connection(runtime: Runtime, connection_id: int, act: Callable[[Session, Connection], object]) -> bool:
    """Run ``act`` on the connection in one session; False (nothing done) when it is gone."""
    with runtime.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return False
        act(session, connection)
    return True


@shared_task(name="personio_sync.refresh_feed", acks_late=True)
def refresh_feed(connection_id: int) -> bool:
    runtime = get_runtime()

    def work() -> None:
        _with_connection(runtime, connection_id, runtime.refresh_jobs)

    return _locked(runtime, "feed", connection_id, work)


@shared_task(name="personio_sync.check_health", acks_late=True)
def check_health(connection_id: int) -> bool:
    runtime = get_runtime()

    def check(session: Session, connection: Connection) -> None:
        check_connection(
            session,
            connection,
            client=runtime.client_for(connection),
            limiter=runtime.limiter,
            refresh=runtime.refresh_jobs,
            events=runtime.events_for(session),
            lockout=runtime.settings.lockout_seconds,
            rate_limited_alert_after=runtime.settings.rate_limited_alert_after,
            now=utcnow(),
        )

    def work() -> None:
        if _with_connection(runtime, connection_id, check):
            dispatch_now(connection_id)  # uploads released from "held" go out now

    return _locked(runtime, "feed", connection_id, work)


def _for_every_connection(task: Any) -> int:
    """Queue ``task(connection_id)`` for every connection; returns how many were queued."""
    with get_runtime().session() as session:
        ids = list(session.scalars(select(Connection.id)))
    for connection_id in ids:
        task.delay(connection_id)
    return len(ids)


@shared_task(name="personio_sync.refresh_all_feeds", acks_late=True)
def refresh_all_feeds() -> int:
    return _for_every_connection(refresh_feed)


@shared_task(name="personio_sync.check_all_health", acks_late=True)
def check_all_health() -> int:
    return _for_every_connection(check_health)
