"""services.health: a connection checked end to end against the stand-in."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests
from sqlalchemy.orm import Session

from models import Connection, Health, Upload, UploadState
from personio.client import PersonioClient, PersonioCredentials
from ratelimit import CompanyRateLimiter
from sandbox import SandboxServer
from services.events import ListPublisher
from services.health import check_connection
from services.jobs import refresh_jobs
from services.secrets import TokenCipher
from services.uploads import transition
from tests.factories import make_connection, make_upload
from tests.openapi import SpecValidationRecorder

pytestmark = pytest.mark.rolled_back

if TYPE_CHECKING:
    from services.schemas import IntakePolicy
    from tests.conftest import Clock

COMPANY, DOMAIN, TOKEN = 1000, "demo.jobs.personio.de", "demo-token-please-change"


@pytest.fixture(autouse=True)
def _probe_allowed(recorder: SpecValidationRecorder) -> None:
    """Every check starts with the credential probe, whose empty body is invalid on purpose."""
    recorder.allow_credential_probe = True


@pytest.fixture
def connection(session: Session, cipher: TokenCipher, clock: Clock) -> Connection:
    return make_connection(session, cipher, company_id=COMPANY, token=TOKEN, jobs_domain=DOMAIN, health=Health.UNCHECKED, at=clock())


def check(session: Session, connection: Connection, http: requests.Session, sandbox: SandboxServer, limiter: CompanyRateLimiter,
          events: ListPublisher, clock: Clock, *, token: str = TOKEN) -> Health:
    client = PersonioClient(http, base_url=sandbox.url, credentials=PersonioCredentials(COMPANY, token), app_id="TEST", timeout=(2, 5))
    return check_connection(
        session, connection, client=client, limiter=limiter,
        refresh=lambda s, c: refresh_jobs(s, c, http=http, feed_url_template=sandbox.feed_url_template, timeout=(2, 5), events=events, now=clock()),
        events=events, lockout=2.0, now=clock(),
    )


def test_working_connection_is_healthy_and_spends_one_request(session: Session, connection: Connection, http: requests.Session, sandbox: SandboxServer,
                                                              limiter: CompanyRateLimiter, events: ListPublisher, clock: Clock) -> None:
    assert check(session, connection, http, sandbox, limiter, events, clock) == Health.HEALTHY
    assert connection.credentials_ok_at is not None and connection.health_checked_at is not None
    assert limiter.usage(str(COMPANY)) == 1
    assert sandbox.state.applications() == []  # the probe created nothing
    assert events.events[-1]["health"] == "healthy" and events.events[-1]["previous"] == "unchecked"


def test_wrong_token_beats_a_broken_feed(session: Session, connection: Connection, http: requests.Session, sandbox: SandboxServer,
                                         limiter: CompanyRateLimiter, events: ListPublisher, clock: Clock) -> None:
    sandbox.state.patch_company(COMPANY, {"feed_mode": "html"})
    assert check(session, connection, http, sandbox, limiter, events, clock, token="wrong") == Health.INVALID_CREDENTIALS
    assert "Recruiting API key" in events.events[-1]["message_en"]
    assert "Recruiting-API-Schlüssel" in events.events[-1]["message_de"]


def test_disabled_feed_is_reported_with_the_menu_path(session: Session, connection: Connection, http: requests.Session, sandbox: SandboxServer,
                                                      limiter: CompanyRateLimiter, events: ListPublisher, clock: Clock,
                                                      recorder: SpecValidationRecorder) -> None:
    recorder.outside_spec_statuses.add(301)  # a disabled feed redirects to the career page
    sandbox.state.patch_company(COMPANY, {"feed_mode": "redirect"})
    assert check(session, connection, http, sandbox, limiter, events, clock) == Health.FEED_DISABLED
    assert "Enable XML feed" in events.events[-1]["message_en"]
    assert "XML-Schnittstelle aktivieren" in events.events[-1]["message_de"]


def test_recruiting_disabled(session: Session, connection: Connection, http: requests.Session, sandbox: SandboxServer,
                             limiter: CompanyRateLimiter, events: ListPublisher, clock: Clock) -> None:
    sandbox.state.patch_company(COMPANY, {"public_api_enabled": False})
    assert check(session, connection, http, sandbox, limiter, events, clock) == Health.RECRUITING_DISABLED
    assert connection.health_reason == "feature.public-api.disabled"


def test_held_uploads_resume_when_a_check_finds_the_credentials_work_again(
    session: Session, connection: Connection, http: requests.Session, sandbox: SandboxServer, limiter: CompanyRateLimiter,
    events: ListPublisher, clock: Clock, intake_policy: IntakePolicy,
) -> None:
    connection.health = Health.INVALID_CREDENTIALS
    upload_id = make_upload(session, intake_policy, clock(), "r1", events=events, expect=None, project_id="p",
                            first_name="A", last_name="B", email="a@example.org")
    upload = session.get(Upload, upload_id)
    assert upload is not None
    transition(upload, UploadState.HELD, clock())
    session.commit()

    assert check(session, connection, http, sandbox, limiter, events, clock) == Health.HEALTHY

    session.refresh(upload)
    assert upload.state == UploadState.QUEUED and upload.next_attempt_at <= clock()
    assert events.events[-1]["resumed_uploads"] == 1


def test_budget_busy_keeps_a_known_credentials_problem(session: Session, connection: Connection, http: requests.Session, sandbox: SandboxServer,
                                                       limiter: CompanyRateLimiter, events: ListPublisher, clock: Clock) -> None:
    connection.health = Health.INVALID_CREDENTIALS
    session.commit()
    limiter.lock_out(str(COMPANY), 5.0)
    assert check(session, connection, http, sandbox, limiter, events, clock) == Health.INVALID_CREDENTIALS
    assert sandbox.state.stats()["companies"].get(str(COMPANY), {}).get("accepted", 0) == 0
