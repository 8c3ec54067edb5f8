"""Checking a connection end to end: credentials (by probe), jobs feed, channel, budget.

Also the company's run of 429s ("storm"): ``connections.rate_limited_since`` is the first 429
of the run, and any other answer of Personio ends it. A run longer than the policy's
``rate_limited_alert_after`` turns the connection ``rate_limited_sustained``: one
``connection.health`` event on the way in and one on the way out, and the status of every
waiting upload says it waits for Personio's limit. Uploads are never failed for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Connection, Health, Upload, UploadState
from models.db import end_transaction
from personio.client import PersonioClient
from personio.errors import (
    PersonioError,
    PersonioFeatureDisabled,
    PersonioRateLimited,
    PersonioUnauthorized,
)
from services.connections import HEALTH_PRECEDENCE, set_health
from services.context import RateLimiter
from services.events import EventPublisher
from services.jobs import RefreshResult

log = logging.getLogger(__name__)


RATE_LIMIT_HEALTH = frozenset({Health.RATE_LIMITED, Health.RATE_LIMITED_SUSTAINED})


def waiting_uploads(session: Session, connection: Connection) -> int:
    """Uploads of the connection that still wait to be sent (queued or being sent)."""
    return session.scalar(
        select(func.count()).select_from(Upload).where(
            Upload.connection_id == connection.id, Upload.state.in_((UploadState.QUEUED, UploadState.SENDING))
        )
    ) or 0


def observe_rate_limited(session: Session, connection: Connection, *, now: datetime, alert_after: float, events: EventPublisher) -> None:
    """Personio answered 429: start or continue the storm; past ``alert_after`` it is sustained."""
    if connection.rate_limited_since is None:
        connection.rate_limited_since = now
    since = connection.rate_limited_since
    current = connection.health
    if current == Health.RATE_LIMITED_SUSTAINED:
        connection.health_checked_at = now
    elif now - since >= timedelta(seconds=alert_after) and HEALTH_PRECEDENCE.index(Health.RATE_LIMITED_SUSTAINED) <= HEALTH_PRECEDENCE.index(current):
        waiting = waiting_uploads(session, connection)
        set_health(
            session, connection, Health.RATE_LIMITED_SUSTAINED, "personio.rate_limited_sustained", now=now, events=events,
            extra={"rate_limited_since": since.isoformat(), "waiting_uploads": waiting},
        )
        log.warning(
            "connection %s (company %s): only 429s from Personio since %s; %d uploads wait for Personio's limit",
            connection.id, connection.company_id, since.isoformat(), waiting,
        )
    else:
        set_health(session, connection, Health.RATE_LIMITED, "personio.rate_limited", now=now, events=events, only_if_healthy=True)
    session.flush()  # the caller commits (see services)


def observe_personio_answered(session: Session, connection: Connection, *, now: datetime, events: EventPublisher) -> None:
    """Personio answered something other than 429: a storm, if any, is over."""
    since = connection.rate_limited_since
    if since is None and connection.health not in RATE_LIMIT_HEALTH:
        return
    connection.rate_limited_since = None
    if connection.health in RATE_LIMIT_HEALTH:
        extra = None
        if connection.health == Health.RATE_LIMITED_SUSTAINED:
            extra = {"rate_limited_since": since.isoformat() if since else None, "waiting_uploads": waiting_uploads(session, connection)}
            log.warning("connection %s (company %s): Personio accepts requests again (429s since %s)", connection.id, connection.company_id, since.isoformat() if since else "?")
        # The feed's own problems come back with its next refresh (see observe_feed).
        if connection.channel_invalid_at is not None and connection.channel_id is not None:
            set_health(session, connection, Health.CHANNEL_INVALID, "errors.posting-validation.channel-not-found", now=now, events=events, extra=extra)
        else:
            set_health(session, connection, Health.HEALTHY, None, now=now, events=events, extra=extra)
    session.flush()  # the caller commits (see services)


def probe_credentials(client: PersonioClient, limiter: RateLimiter, *, lockout: float) -> tuple[Health | None, str]:
    """Probe through the company's shared budget. Returns (credential health or None if unknown, reason)."""
    company = str(client.company_id)
    acquisition = limiter.try_acquire(company, "applications")
    if not acquisition.granted:
        return None, "rate budget busy"
    try:
        client.probe_credentials()
    except PersonioUnauthorized as error:
        return Health.INVALID_CREDENTIALS, error.reason_code
    except PersonioFeatureDisabled as error:
        return Health.RECRUITING_DISABLED, error.reason_code
    except PersonioRateLimited as error:
        limiter.lock_out(company, error.retry_after if error.retry_after is not None else lockout)
        return Health.RATE_LIMITED, error.reason_code
    except PersonioError as error:
        return None, error.reason_code
    return Health.HEALTHY, "connect.credentials_ok"


def combine(credentials: Health | None, feed: RefreshResult | None, connection: Connection) -> tuple[Health, str | None]:
    """The most severe of what was observed (see HEALTH_PRECEDENCE)."""
    found: list[tuple[Health, str | None]] = []
    if connection.health == Health.RATE_LIMITED_SUSTAINED and credentials != Health.HEALTHY:
        # Still only 429s (or no budget to ask): sustained until Personio answers otherwise.
        found.append((connection.health, connection.health_reason))
    if credentials is None:
        # Unknown this round: keep a known credential problem rather than forgetting it.
        if connection.health in (Health.INVALID_CREDENTIALS, Health.RECRUITING_DISABLED):
            found.append((connection.health, connection.health_reason))
        elif connection.health == Health.RATE_LIMITED and connection.rate_limited_since is not None:
            found.append((connection.health, connection.health_reason))
    elif credentials != Health.HEALTHY:
        found.append((credentials, "personio.rate_limited" if credentials == Health.RATE_LIMITED else connection.health_reason))
    if feed is not None and feed.error_health is not None:
        found.append((feed.error_health, feed.error))
    if connection.channel_invalid_at is not None and connection.channel_id is not None:
        found.append((Health.CHANNEL_INVALID, "errors.posting-validation.channel-not-found"))
    if not found:
        return Health.HEALTHY, None
    return min(found, key=lambda item: HEALTH_PRECEDENCE.index(item[0]))


def check_connection(
    session: Session,
    connection: Connection,
    *,
    client: PersonioClient,
    limiter: RateLimiter,
    refresh: Callable[[Session, Connection], RefreshResult],
    events: EventPublisher,
    lockout: float,
    now: datetime,
    rate_limited_alert_after: float = 3600.0,
) -> Health:
    end_transaction(session)  # deliberate commit point (see services): no database lock while Personio answers
    credentials, reason = probe_credentials(client, limiter, lockout=lockout)
    if credentials == Health.HEALTHY:
        connection.credentials_ok_at = now
    if credentials == Health.RATE_LIMITED or (credentials is None and connection.rate_limited_since is not None):
        # A 429, or no budget left to ask during a run of 429s: the run goes on (maybe sustained now).
        observe_rate_limited(session, connection, now=now, alert_after=rate_limited_alert_after, events=events)
    elif credentials is not None:
        observe_personio_answered(session, connection, now=now, events=events)
    elif credentials in (Health.INVALID_CREDENTIALS, Health.RECRUITING_DISABLED):
        connection.health_reason = reason
    feed = refresh(session, connection)
    health, why = combine(credentials, feed, connection)
    if credentials in (Health.INVALID_CREDENTIALS, Health.RECRUITING_DISABLED):
        why = reason
    set_health(session, connection, health, why, now=now, events=events)
    connection.health_checked_at = now
    session.flush()  # the caller commits (see services)
    return health
