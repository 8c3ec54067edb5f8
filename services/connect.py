"""``connect``: check the admin's four inputs against Personio, explain each problem, store.

Each input gets its own verdict and fix, in English and German. Nothing is stored while
an input is known to be wrong; an input that could not be checked right now (Personio
unreachable, budget busy) does not block saving — the beat health check finishes the job.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from sqlalchemy.orm import Session

from models import Connection, Health
from models.db import end_transaction
from personio.client import PersonioClient, PersonioCredentials
from personio.domain import FEED_LANGUAGES, InvalidJobsDomain, feed_url, normalise_jobs_domain
from personio.feed import FeedDisabled, FeedError, FeedInvalid, FeedJobs, fetch_feed
from personio.phases import Phase, PhaseInvalid, describe_phase, parse_phase
from services.connections import ConnectionView, describe_connection, find_connection, set_health
from services.context import RateLimiter
from services.events import EventPublisher
from services.health import probe_credentials
from services.jobs import apply_feed
from services.messages import check_reason, render_both
from services.secrets import TokenCipher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectRequest:
    account_id: str
    company_id: str
    access_token: str = field(repr=False)
    domain: str
    channel_id: str | None = None
    feed_language: str = "de"
    # The Personio phase new applications land in, as an admin types it ("system:offer",
    # "custom:42"); None or "": Personio's initial phase for the job's category.
    phase: str | None = None


@dataclass(frozen=True)
class Check:
    field: str
    ok: bool | None  # None: could not be checked now
    code: str
    message: dict[str, str]


@dataclass
class ConnectReport:
    saved: bool
    checks: list[Check]
    connection: ConnectionView | None = None

    @property
    def problems(self) -> list[Check]:
        return [check for check in self.checks if check.ok is False]


def _check(field_name: str, ok: bool | None, code: str, **params: Any) -> Check:
    return Check(field_name, ok, code, render_both(code, **params))


def connect_account(
    session: Session,
    request: ConnectRequest,
    *,
    cipher: TokenCipher,
    client_factory: Callable[[PersonioCredentials], PersonioClient],
    limiter: RateLimiter,
    http: requests.Session,
    feed_url_template: str,
    timeout: tuple[float, float],
    events: EventPublisher,
    lockout: float,
    now: datetime,
) -> ConnectReport:
    checks: list[Check] = []
    company_id = _positive_int(request.company_id)
    if company_id is None:
        checks.append(_check("company_id", False, "connect.company_id", value=repr(request.company_id)))
    token = request.access_token.strip()
    if not token or re.search(r"\s", token) or len(token) > 1024:
        checks.append(_check("access_token", False, "connect.access_token"))
    domain: str | None = None
    try:
        domain = normalise_jobs_domain(request.domain)
    except InvalidJobsDomain as error:
        checks.append(_check("domain", False, error.code, value=repr(request.domain)[:90], detail=error.reason))
    channel_id: int | None = None
    if request.channel_id not in (None, ""):
        channel_id = _positive_int(request.channel_id or "")
        if channel_id is None:
            checks.append(_check("channel_id", False, "connect.channel_id", value=repr(request.channel_id)))
    language = (request.feed_language or "de").lower()
    if language not in FEED_LANGUAGES:
        checks.append(_check("feed_language", False, "connect.feed_language", value=repr(request.feed_language)))
    phase: Phase | None = None
    if request.phase not in (None, ""):
        try:
            phase = parse_phase(request.phase or "")
        except PhaseInvalid as error:
            checks.append(_check("phase", False, "connect.phase", value=repr(request.phase)[:90], detail=error.fix))
    if checks:
        return ConnectReport(saved=False, checks=checks)
    assert company_id is not None and domain is not None

    client = client_factory(PersonioCredentials(company_id, token))
    end_transaction(session)  # deliberate commit point (see services): no database lock while Personio and the feed answer
    credentials, reason = probe_credentials(client, limiter, lockout=lockout)
    if credentials == Health.HEALTHY:
        checks.append(_check("access_token", True, "connect.credentials_ok"))
    elif credentials == Health.INVALID_CREDENTIALS:
        checks.append(_check("access_token", False, "health.invalid_credentials"))
    elif credentials == Health.RECRUITING_DISABLED:
        checks.append(_check("access_token", False, reason))
    else:
        checks.append(_check("access_token", None, "connect.credentials_unknown", detail=check_reason(reason)))

    fetched_jobs: FeedJobs | None = None
    try:
        fetched = fetch_feed(http, feed_url(feed_url_template, domain, language), timeout=timeout)
        fetched_jobs = fetched.jobs or FeedJobs()
        checks.append(_check("domain", True, "connect.feed_ok", domain=domain, jobs=len(fetched_jobs)))
    except FeedDisabled:
        checks.append(_check("domain", False, "health.feed_disabled", domain=domain))
    except FeedInvalid as error:
        checks.append(_check("domain", False, "connect.feed_invalid", domain=domain, detail=error.code))
    except FeedError as error:
        checks.append(_check("domain", None, "health.feed_unreachable", domain=domain, detail=error.code))
    if channel_id is not None:
        checks.append(_check("channel_id", None, "connect.channel_unverified"))
    if phase is not None and phase["type"] == "system":
        checks.append(_check("phase", True, "connect.phase_ok", phase=describe_phase(phase)))
    elif phase is not None:
        # Personio takes any custom phase id and files an unknown one under "unassigned".
        checks.append(_check("phase", None, "connect.phase_unverified", phase=describe_phase(phase)))

    if any(check.ok is False for check in checks):
        return ConnectReport(saved=False, checks=checks)

    connection = find_connection(session, request.account_id)
    if connection is None:
        connection = Connection(account_id=request.account_id, created_at=now, health=Health.UNCHECKED)
        session.add(connection)
    if connection.channel_id != channel_id:
        connection.channel_invalid_at = None
    if connection.jobs_domain != domain or connection.feed_language != language:
        connection.feed_etag = connection.feed_last_modified = connection.feed_sha256 = None
    connection.company_id = company_id
    connection.access_token_encrypted = cipher.encrypt(token)
    connection.jobs_domain = domain
    connection.channel_id = channel_id
    connection.feed_language = language
    connection.phase = dict(phase) if phase is not None else None
    connection.updated_at = now
    session.flush()
    if fetched_jobs is not None:
        apply_feed(session, connection, fetched_jobs, now=now)
        connection.feed_fetched_at = now
        connection.feed_error = None
        connection.feed_skipped = len(fetched_jobs.skipped)
    if credentials == Health.HEALTHY:
        connection.credentials_ok_at = now
        set_health(session, connection, Health.HEALTHY, None, now=now, events=events)
    session.flush()  # the caller commits (see services)
    log.info("connection for account %s stored (company %s, %s)", request.account_id, company_id, domain)
    return ConnectReport(saved=True, checks=checks, connection=describe_connection(connection))


def _positive_int(text: str) -> int | None:
    text = str(text).strip()
    if not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < 2**53 else None
