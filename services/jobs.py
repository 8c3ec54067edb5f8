"""The per-connection cache of Personio jobs, kept in step with the public jobs XML feed.

An unchanged feed writes nothing: the fetch is conditional (ETag / Last-Modified) and a
200 whose body hashes like the last one stops before touching a row. A job that left the
feed is kept and marked unpublished with the time it vanished.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Connection, Health, Job
from models.db import end_transaction
from personio.domain import feed_url
from personio.feed import FeedError, FeedJob, FeedJobs, fetch_feed
from services.connections import observe_feed
from services.events import EventPublisher

log = logging.getLogger(__name__)

_LOGGED_SKIPS = 20  # skipped positions logged one by one per refresh; the count is stored

_JOB_FIELDS = (
    "name",
    "office",
    "department",
    "recruiting_category",
    "employment_type",
    "seniority",
    "schedule",
    "years_of_experience",
    "keywords",
    "occupation",
    "occupation_category",
    "subcompany",
)


@dataclass(frozen=True)
class RefreshResult:
    changed: bool  # rows were written
    not_modified: bool  # 304 or identical body
    published: int
    added: int
    unpublished: int
    error: str | None = None
    # FEED_UNREACHABLE when the fetch failed for a passing reason (retried), FEED_DISABLED
    # when the answer is permanently not a Personio feed (off, HTML, other XML, not XML).
    error_health: Health | None = None
    skipped: int = 0  # invalid <position>s left out of the applied feed


def _values(feed_job: FeedJob) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(feed_job, name) for name in _JOB_FIELDS}
    values["name"] = values["name"] or f"Job {feed_job.id}"
    values["additional_offices"] = list(feed_job.additional_offices)
    values["sections"] = list(feed_job.description_sections)
    values["personio_created_at"] = feed_job.created_at
    # Decimals become strings so the JSON column compares equal on the next refresh.
    salary = feed_job.salary
    values["salary"] = None if salary is None else {
        key: (None if value is None else str(value)) for key, value in asdict(salary).items()
    }
    return values


def apply_feed(session: Session, connection: Connection, jobs: list[FeedJob], *, now: datetime) -> RefreshResult:
    """Upsert the feed's jobs by Personio id; mark the ones that left it unpublished."""
    cached = {job.job_position_id: job for job in session.scalars(select(Job).where(Job.connection_id == connection.id))}
    seen: set[int] = set()
    added = unpublished = 0
    changed = False
    for feed_job in jobs:
        seen.add(feed_job.id)
        values = _values(feed_job)
        job = cached.get(feed_job.id)
        if job is None:
            session.add(Job(connection_id=connection.id, job_position_id=feed_job.id, published=True, first_seen_at=now, updated_at=now, **values))
            added += 1
            changed = True
            continue
        differs = not job.published or any(getattr(job, key) != value for key, value in values.items())
        if differs:
            for key, value in values.items():
                setattr(job, key, value)
            job.published = True
            job.unpublished_at = None
            job.updated_at = now
            changed = True
    for job_id, job in cached.items():
        if job_id not in seen and job.published:
            job.published = False
            job.unpublished_at = now
            job.updated_at = now
            unpublished += 1
            changed = True
    return RefreshResult(changed=changed, not_modified=False, published=len(seen), added=added, unpublished=unpublished)


def refresh_jobs(
    session: Session,
    connection: Connection,
    *,
    http: requests.Session,
    feed_url_template: str,
    timeout: tuple[float, float],
    events: EventPublisher,
    now: datetime,
    force: bool = False,
) -> RefreshResult:
    """Fetch the connection's feed and bring the cache in step; record feed health."""
    url = feed_url(feed_url_template, connection.jobs_domain, connection.feed_language)
    end_transaction(session)  # deliberate commit point (see services): no database lock while the feed's host answers
    try:
        fetched = fetch_feed(
            http,
            url,
            etag=None if force else connection.feed_etag,
            last_modified=None if force else connection.feed_last_modified,
            timeout=timeout,
        )
    except FeedError as error:
        # Only a passing failure (connection, timeout, 429, 5xx) is "retried automatically";
        # a feed that is off or not Personio's XML (FeedDisabled, FeedInvalid) needs the admin.
        health = Health.FEED_UNREACHABLE if error.retryable else Health.FEED_DISABLED
        connection.feed_error = error.code
        log.warning("connection %s: jobs feed %s (%s)", connection.id, health.value, error.code)
        observe_feed(session, connection, health, error.code, now=now, events=events)
        session.flush()
        return RefreshResult(False, False, 0, 0, 0, error=error.code, error_health=health)

    if connection.feed_error is not None:
        connection.feed_error = None
    observe_feed(session, connection, None, None, now=now, events=events)
    if fetched.not_modified or (not force and fetched.content_sha256 is not None and fetched.content_sha256 == connection.feed_sha256):
        log.info("connection %s: jobs feed unchanged", connection.id)
        return RefreshResult(False, True, 0, 0, 0)
    jobs = fetched.jobs or FeedJobs()
    result = replace(apply_feed(session, connection, jobs, now=now), skipped=len(jobs.skipped))
    connection.feed_skipped = len(jobs.skipped)
    for position in jobs.skipped[:_LOGGED_SKIPS]:
        log.warning("connection %s: jobs feed position skipped (%s): %s", connection.id, position.reason, position.detail)
    connection.feed_etag = fetched.etag
    connection.feed_last_modified = fetched.last_modified
    connection.feed_sha256 = fetched.content_sha256
    connection.feed_fetched_at = now
    session.flush()  # the caller commits (see services)
    log.info("connection %s: jobs feed applied (%d published, %d new, %d unpublished, %d positions skipped)", connection.id, result.published, result.added, result.unpublished, result.skipped)
    return result


def keyword_list(keywords: str | None) -> list[str]:
    """The feed's ``<keywords>`` (one comma-separated text) as a list, blanks dropped."""
    return [keyword.strip() for keyword in (keywords or "").split(",") if keyword.strip()]


def list_jobs(session: Session, connection: Connection, *, include_unpublished: bool = False) -> list[dict[str, Any]]:
    """The cached jobs with everything the feed tells a recruiter picking one (JSON-ready).

    ``salary`` is as the feed gives it (amounts as decimal strings), ``sections`` the names of
    the job description's sections in feed order (``null`` until the feed was applied since
    revision 0006), ``keywords`` a list.
    """
    query = select(Job).where(Job.connection_id == connection.id).order_by(Job.published.desc(), Job.name)
    if not include_unpublished:
        query = query.where(Job.published.is_(True))
    return [
        {
            "job_position_id": job.job_position_id,
            "name": job.name,
            "office": job.office,
            "additional_offices": job.additional_offices,
            "department": job.department,
            "recruiting_category": job.recruiting_category,
            "employment_type": job.employment_type,
            "seniority": job.seniority,
            "schedule": job.schedule,
            "years_of_experience": job.years_of_experience,
            "keywords": keyword_list(job.keywords),
            "occupation": job.occupation,
            "occupation_category": job.occupation_category,
            "subcompany": job.subcompany,
            "salary": job.salary,
            "sections": job.sections,
            "published": job.published,
            "unpublished_at": job.unpublished_at.isoformat() if job.unpublished_at else None,
            "created_at": job.personio_created_at.isoformat() if job.personio_created_at else None,
        }
        for job in session.scalars(query)
    ]
