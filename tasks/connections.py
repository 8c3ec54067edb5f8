"""Beat tasks that keep every connection's jobs cache and health fresh.

A refresh already running for a connection is skipped (and logged): a Redis lock with a
TTL guards each connection, so a crashed refresh leaves nothing behind that blocks the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import shared_task
from sqlalchemy import select

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


@shared_task(name="personio_sync.refresh_feed", acks_late=True)
def refresh_feed(connection_id: int) -> bool:
    runtime = get_runtime()

    def work() -> None:
        with runtime.session() as session:
            connection = session.get(Connection, connection_id)
            if connection is None:
                return
            runtime.refresh_jobs(session, connection)

    return _locked(runtime, "feed", connection_id, work)


@shared_task(name="personio_sync.check_health", acks_late=True)
def check_health(connection_id: int) -> bool:
    runtime = get_runtime()

    def work() -> None:
        with runtime.session() as session:
            connection = session.get(Connection, connection_id)
            if connection is None:
                return
            check_connection(
                session,
                connection,
                client=runtime.client_for(connection),
                limiter=runtime.limiter,
                refresh=runtime.refresh_jobs,
                events=runtime.events_for(session),
                lockout=runtime.settings.lockout_seconds,
                now=utcnow(),
            )
        dispatch_now(connection_id)  # uploads released from "held" go out now

    return _locked(runtime, "feed", connection_id, work)


def _all_connection_ids() -> list[int]:
    with get_runtime().session() as session:
        return list(session.scalars(select(Connection.id)))


@shared_task(name="personio_sync.refresh_all_feeds", acks_late=True)
def refresh_all_feeds() -> int:
    ids = _all_connection_ids()
    for connection_id in ids:
        refresh_feed.delay(connection_id)
    return len(ids)


@shared_task(name="personio_sync.check_all_health", acks_late=True)
def check_all_health() -> int:
    ids = _all_connection_ids()
    for connection_id in ids:
        check_health.delay(connection_id)
    return len(ids)
