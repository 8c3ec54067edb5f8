"""Checking a connection end to end: credentials (by probe), jobs feed, channel, budget."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from models import Connection, Health
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
    if credentials is None:
        # Unknown this round: keep a known credential problem rather than forgetting it.
        if connection.health in (Health.INVALID_CREDENTIALS, Health.RECRUITING_DISABLED):
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
) -> Health:
    end_transaction(session)  # deliberate commit point (see services): no database lock while Personio answers
    credentials, reason = probe_credentials(client, limiter, lockout=lockout)
    if credentials == Health.HEALTHY:
        connection.credentials_ok_at = now
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
