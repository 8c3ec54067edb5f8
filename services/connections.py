"""Connections: storing the admin's four inputs, their health, and what follows from it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import HOLDING_HEALTH, Connection, Health, Job, ProjectLink, Upload, UploadState
from personio.feed import UNREACHABLE_CODES
from personio.phases import Phase, describe_phase
from services.events import EventPublisher
from services.messages import moment, render_both
from services.uploads import transition

log = logging.getLogger(__name__)

# Worst first: the health shown is the most severe problem found.
HEALTH_PRECEDENCE = (
    Health.INVALID_CREDENTIALS,
    Health.RECRUITING_DISABLED,
    # Nothing reaches Personio, though the connection itself is fine: above the feed and channel.
    Health.RATE_LIMITED_SUSTAINED,
    Health.FEED_DISABLED,
    Health.CHANNEL_INVALID,
    Health.FEED_UNREACHABLE,
    Health.RATE_LIMITED,
    Health.HEALTHY,
    Health.UNCHECKED,
)


# Feed answers that mean "switched off or the wrong domain"; every other permanent feed error
# means the address answers, but not with Personio's XML.
_FEED_OFF = frozenset({"feed.html", "feed.redirect", "feed.forbidden", "feed.not_found"})


def health_message(connection: Connection) -> dict[str, str]:
    code = f"health.{connection.health.value}"
    if connection.health == Health.FEED_DISABLED and connection.feed_error and connection.feed_error not in _FEED_OFF:
        code = "health.feed_invalid"
    return render_both(
        code,
        domain=connection.jobs_domain,
        channel_id=connection.channel_id,
        detail=connection.feed_error or connection.health_reason,
        since=moment(connection.rate_limited_since) if connection.rate_limited_since else None,
    )


class ConnectionView(TypedDict):
    """A connection as :func:`describe_connection` shows it (JSON-ready, no token)."""

    account_id: str
    company_id: int
    jobs_domain: str
    channel_id: int | None
    feed_language: str
    phase: str | None  # the connection's default Personio phase ("system:offer", "custom:42"), None: Personio's initial phase
    health: str
    health_reason: str | None
    health_checked_at: str | None
    health_changed_at: str | None
    message: dict[str, str]  # by language
    feed_fetched_at: str | None
    feed_skipped: int | None  # invalid positions left out of the last applied feed
    feed_status: str | None  # the feed error code, "n positions skipped", "ok", or None before the first fetch
    feed_message: dict[str, str] | None  # the same for the admin, by language


def feed_message(connection: Connection) -> dict[str, str] | None:
    """The jobs feed's state for the admin, by language (None before the first fetch)."""
    error = connection.feed_error
    if error is not None:
        code = "health.feed_unreachable" if error in UNREACHABLE_CODES else "health.feed_disabled" if error in _FEED_OFF else "health.feed_invalid"
        return render_both(code, domain=connection.jobs_domain, detail=error)
    if connection.feed_skipped:
        code = "feed.position_skipped" if connection.feed_skipped == 1 else "feed.positions_skipped"
        return render_both(code, count=connection.feed_skipped, domain=connection.jobs_domain)
    return None if connection.feed_fetched_at is None else render_both("feed.ok", domain=connection.jobs_domain)


def feed_status(connection: Connection) -> str | None:
    """The jobs feed's state in one line: its error code, what was skipped, or ok."""
    if connection.feed_error is not None:
        return connection.feed_error
    if connection.feed_skipped:
        noun = "position" if connection.feed_skipped == 1 else "positions"
        return f"{connection.feed_skipped} {noun} skipped"
    return None if connection.feed_fetched_at is None else "ok"


def describe_connection(connection: Connection) -> ConnectionView:
    """A connection as the CLI and the main app see it (never the token)."""
    return {
        "account_id": connection.account_id,
        "company_id": connection.company_id,
        "jobs_domain": connection.jobs_domain,
        "channel_id": connection.channel_id,
        "feed_language": connection.feed_language,
        "phase": describe_phase(connection.phase),
        "health": connection.health.value,
        "health_reason": connection.health_reason,
        "health_checked_at": connection.health_checked_at.isoformat() if connection.health_checked_at else None,
        "health_changed_at": connection.health_changed_at.isoformat() if connection.health_changed_at else None,
        "message": health_message(connection),
        "feed_fetched_at": connection.feed_fetched_at.isoformat() if connection.feed_fetched_at else None,
        "feed_skipped": connection.feed_skipped,
        "feed_status": feed_status(connection),
        "feed_message": feed_message(connection),
    }


def set_health(
    session: Session,
    connection: Connection,
    health: Health,
    reason: str | None,
    *,
    now: datetime,
    events: EventPublisher,
    only_if_healthy: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Record a health observation; publish an event and resume held uploads when it changes.

    ``extra`` adds fields to the event (allowed ones only, see ``services.events``).
    """
    if only_if_healthy and connection.health not in (Health.HEALTHY, Health.UNCHECKED):
        return False
    connection.health_checked_at = now
    if connection.health == health and connection.health_reason == reason:
        return False
    previous = connection.health
    connection.health = health
    connection.health_reason = reason
    connection.health_changed_at = now
    resumed = 0
    if previous in HOLDING_HEALTH and health not in HOLDING_HEALTH:
        resumed = resume_held_uploads(session, connection, now=now)
    message = health_message(connection)
    # Published before the commit: the event commits with the health change (outbox).
    events.publish(
        {
            "type": "connection.health",
            "account_id": connection.account_id,
            "health": health.value,
            "previous": previous.value,
            "reason_code": reason,
            "message_en": message["en"],
            "message_de": message["de"],
            "resumed_uploads": resumed,
            "at": now.isoformat(),
            **(extra or {}),
        }
    )
    session.flush()  # the caller commits (see services)
    log.info("connection %s health %s -> %s (%s); %d held uploads resumed", connection.id, previous.value, health.value, reason, resumed)
    return True


def resume_held_uploads(session: Session, connection: Connection, *, now: datetime) -> int:
    held = session.scalars(
        select(Upload).where(Upload.connection_id == connection.id, Upload.state == UploadState.HELD)
    ).all()
    for upload in held:
        upload.next_attempt_at = now
        upload.reason_code = None
        upload.message_en = None
        upload.message_de = None
        transition(upload, UploadState.QUEUED, now, reason_code="connection works again")
    return len(held)


FEED_HEALTH = frozenset({Health.FEED_DISABLED, Health.FEED_UNREACHABLE})


def observe_feed(session: Session, connection: Connection, problem: Health | None, reason: str | None, *, now: datetime, events: EventPublisher) -> None:
    """Fold a feed observation into the health without hiding a more severe problem."""
    current = connection.health
    if problem is not None:
        if current in FEED_HEALTH or HEALTH_PRECEDENCE.index(problem) <= HEALTH_PRECEDENCE.index(current):
            set_health(session, connection, problem, reason, now=now, events=events)
    elif current in FEED_HEALTH:
        if connection.channel_invalid_at is not None and connection.channel_id is not None:
            set_health(session, connection, Health.CHANNEL_INVALID, "errors.posting-validation.channel-not-found", now=now, events=events)
        else:
            set_health(session, connection, Health.HEALTHY, None, now=now, events=events)


def record_channel_invalid(session: Session, connection: Connection, *, now: datetime, events: EventPublisher) -> None:
    if connection.channel_invalid_at is None:
        connection.channel_invalid_at = now
    worse = HEALTH_PRECEDENCE.index(connection.health) < HEALTH_PRECEDENCE.index(Health.CHANNEL_INVALID)
    if not worse:
        set_health(session, connection, Health.CHANNEL_INVALID, "errors.posting-validation.channel-not-found", now=now, events=events)


def link_project(
    session: Session,
    connection: Connection,
    project_id: str,
    job_position_id: int,
    *,
    now: datetime,
    require_cached: bool,
    phase: Phase | None = None,
) -> ProjectLink:
    """Link a sourcing project to a Personio job (replacing an earlier link, its phase included).

    ``phase`` (from ``personio.phases.parse_phase``) is where this project's candidates land in
    Personio unless a request says otherwise; None: the connection's phase.
    """
    if require_cached:
        job = session.scalar(select(Job).where(Job.connection_id == connection.id, Job.job_position_id == job_position_id))
        if job is None:
            raise LinkError(
                f"job {job_position_id} is not in the jobs feed of {connection.jobs_domain}; "
                "run `personio-sync jobs ACCOUNT` to see the jobs Personio publishes"
            )
        if not job.published:
            raise LinkError(f"job {job_position_id} ({job.name}) is no longer published in Personio; pick an open job")
    link = session.scalar(select(ProjectLink).where(ProjectLink.connection_id == connection.id, ProjectLink.project_id == project_id))
    if link is None:
        link = ProjectLink(connection_id=connection.id, project_id=project_id, job_position_id=job_position_id, created_at=now, updated_at=now)
        session.add(link)
    else:
        link.job_position_id = job_position_id
        link.updated_at = now
    link.phase = dict(phase) if phase is not None else None
    link.flag = None
    link.flagged_at = None
    session.flush()
    return link


def list_links(session: Session, connection: Connection) -> list[dict[str, object]]:
    """The connection's project → job links; ``flag`` says when the main app should ask for a new job."""
    links = session.scalars(select(ProjectLink).where(ProjectLink.connection_id == connection.id).order_by(ProjectLink.project_id))
    return [
        {
            "project_id": link.project_id,
            "job_position_id": link.job_position_id,
            "phase": describe_phase(link.phase),
            "flag": link.flag,
            "flagged_at": link.flagged_at.isoformat() if link.flagged_at else None,
        }
        for link in links
    ]


class LinkError(ValueError):
    """The requested project → job link cannot be made; the message says why and what to do."""


def find_connection(session: Session, account_id: str) -> Connection | None:
    return session.scalar(select(Connection).where(Connection.account_id == account_id))
