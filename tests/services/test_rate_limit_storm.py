"""A company that answers only 429 for longer than ``rate_limited_alert_after``.

Its connection turns ``rate_limited_sustained`` (one ``connection.health`` event in, one out),
every waiting upload of the company says it waits for Personio's limit (in English and
German), the uploads keep waiting (no attempt is counted, nothing fails), and the first
answer of Personio that is not a 429 ends it all. Personio is the stand-in, told to answer
429 to every request of the company.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker

from models import Connection, Health, Job, Upload, UploadState
from personio.client import PersonioClient, PersonioCredentials
from ratelimit import CompanyRateLimiter
from sandbox import SandboxServer
from services.context import SyncDeps, UploadPolicy
from services.events import ListPublisher
from services.health import check_connection
from services.jobs import refresh_jobs
from services.processing import StepOutcome, StepResult, process_upload
from services.secrets import TokenCipher
from services.uploads import upload_status
from tests.factories import make_connection, make_link, make_upload
from tests.openapi import SpecValidationRecorder
from tests.services.processing_support import claim, client_factory

if TYPE_CHECKING:
    from services.schemas import IntakePolicy
    from tests.conftest import Clock

COMPANY, TOKEN, DOMAIN, JOB = 1000, "demo-token-please-change", "demo.jobs.personio.de", 1000001
ACCOUNT, PROJECT = "acct-1", "proj-1"
ALERT_AFTER = 30.0  # seconds of nothing but 429s (time-scaled; the default is an hour)
WAITING_EN = "Waiting for Personio's limit"
WAITING_DE = "Wartet auf Personios Anfragegrenze"
FOREVER = 1_000_000  # uses of the injected fault: every request of the company


@pytest.fixture
def deps(upload_policy: UploadPolicy, limiter: CompanyRateLimiter, http: requests.Session, sandbox: SandboxServer, cipher: TokenCipher,
         events: ListPublisher, clock: Clock) -> SyncDeps:
    return SyncDeps(
        policy=replace(upload_policy, rate_limited_alert_after=ALERT_AFTER),
        limiter=limiter,
        clients=client_factory(http, sandbox.url, cipher),
        events=events,
        wake=lambda connection_id, delay: None,
        fetch_document=lambda url: b"",
        clock=clock,
        rng=random.Random(7),
    )


@pytest.fixture
def connection(session: Session, cipher: TokenCipher, clock: Clock) -> Connection:
    connection = make_connection(session, cipher, account_id=ACCOUNT, company_id=COMPANY, token=TOKEN, jobs_domain=DOMAIN, at=clock(), commit=False)
    session.add(Job(connection_id=connection.id, job_position_id=JOB, name="Backend Engineer", published=True, first_seen_at=clock(), updated_at=clock()))
    make_link(session, connection, project_id=PROJECT, job_position_id=JOB, at=clock())
    return connection


@pytest.fixture
def storm(sandbox: SandboxServer) -> Callable[[], None]:
    """Start the storm now: the stand-in answers 429 to every request of the company. Returns its end."""
    sandbox.state.inject_fault(company_id=COMPANY, status=429, count=FOREVER)
    return sandbox.state.clear_faults


def record(session: Session, intake_policy: IntakePolicy, clock: Clock, request_id: str) -> int:
    cv = {"category": "cv", "filename": "cv.pdf", "content_base64": "JVBERi0xLjQgY3Y="}
    return make_upload(session, intake_policy, clock(), request_id, account_id=ACCOUNT, project_id=PROJECT, email=f"{request_id}@example.org", documents=[cv])


def step(session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection_id: int, upload_id: int) -> StepResult:
    """Claim due uploads as the dispatcher does and run one step of ``upload_id``."""
    leases = claim(session, session_factory, deps, connection_id)
    assert upload_id in leases, f"upload {upload_id} was not claimable: {leases}"
    result = process_upload(session, deps, upload_id, leases[upload_id])
    # Uploads claimed alongside go back to the queue, as an expired lease would.
    with session_factory.begin() as reconciler:
        for other, token in leases.items():
            if other != upload_id:
                row = reconciler.get(Upload, other)
                assert row is not None and row.lease_token == token
                row.state, row.lease_token, row.lease_until = UploadState.QUEUED, None, None
    session.expire_all()
    return result


def health_events(events: ListPublisher) -> list[dict[str, Any]]:
    return [e for e in events.events if e["type"] == "connection.health"]


def status(session: Session, request_id: str) -> dict[str, Any]:
    session.expire_all()
    found = upload_status(session, request_id)
    assert found is not None
    return found


def test_a_sustained_429_storm_changes_health_alerts_once_and_uploads_say_they_wait(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, storm: Callable[[], None],
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    # given: two uploads; the company answers nothing but 429
    first = record(session, intake_policy, clock, "req-1")
    record(session, intake_policy, clock, "req-2")
    started = clock()

    # when: the first upload is tried again and again for less than the alert threshold
    result = step(session, session_factory, deps, connection.id, first)

    # then: an ordinary lock-out, remembered as the start of the storm
    assert result.outcome == StepOutcome.PARKED
    session.refresh(connection)
    assert (connection.health, connection.rate_limited_since) == (Health.RATE_LIMITED, started)
    assert status(session, "req-2")["message"] is None
    while clock() - started < timedelta(seconds=ALERT_AFTER):
        assert connection.health == Health.RATE_LIMITED
        assert result.wake_in is not None
        clock.advance(result.wake_in + 0.001)
        result = step(session, session_factory, deps, connection.id, first)
        assert result.outcome == StepOutcome.PARKED
        session.refresh(connection)

    # then: past the threshold the connection is rate_limited_sustained, said once by one event
    assert connection.health == Health.RATE_LIMITED_SUSTAINED
    assert connection.rate_limited_since == started
    sustained = [e for e in health_events(events) if e["health"] == "rate_limited_sustained"]
    assert len(sustained) == 1
    assert sustained[0]["previous"] == "rate_limited"
    assert sustained[0]["reason_code"] == "personio.rate_limited_sustained"
    assert sustained[0]["rate_limited_since"] == started.isoformat()
    assert sustained[0]["waiting_uploads"] == 2
    assert "429" in sustained[0]["message_en"] and "429" in sustained[0]["message_de"]
    # and: every waiting upload of the company says why it waits, the one never tried too
    for request_id in ("req-1", "req-2"):
        shown = status(session, request_id)
        assert shown["state"] == "queued" and shown["terminal"] is False
        assert shown["reason_code"] == "personio.rate_limited_sustained"
        assert shown["message"]["en"].startswith(WAITING_EN)
        assert shown["message"]["de"].startswith(WAITING_DE)
        assert started.strftime("%Y-%m-%d %H:%M UTC") in shown["message"]["en"]
    # and: the upload keeps waiting: no attempt counted, nothing failed
    upload = session.get(Upload, first)
    assert upload is not None and upload.attempts == 0 and upload.state == UploadState.QUEUED

    # when: more 429s
    for _ in range(2):
        assert result.wake_in is not None
        clock.advance(result.wake_in + 0.001)
        result = step(session, session_factory, deps, connection.id, first)
    # then: no second alert
    assert len([e for e in health_events(events) if e["health"] == "rate_limited_sustained"]) == 1

    # when: Personio accepts requests again
    storm()
    assert result.wake_in is not None
    clock.advance(result.wake_in + 0.001)
    result = step(session, session_factory, deps, connection.id, first)

    # then: submitted; the storm is over, said once by one event
    assert result.state == UploadState.SUBMITTED
    session.refresh(connection)
    assert (connection.health, connection.rate_limited_since) == (Health.HEALTHY, None)
    ended = [e for e in health_events(events) if e["previous"] == "rate_limited_sustained"]
    assert len(ended) == 1
    assert ended[0]["health"] == "healthy"
    assert ended[0]["rate_limited_since"] == started.isoformat()
    assert ended[0]["waiting_uploads"] == 2  # the CV's upload ended it: req-1 was still being sent
    # and: the upload still waiting is no longer said to wait for Personio's limit
    assert status(session, "req-2")["message"] is None
    assert status(session, "req-2")["reason_code"] is None
    assert status(session, "req-1")["message"]["en"].startswith("The candidate is in Personio")


def test_a_short_storm_stays_rate_limited_and_a_success_ends_it(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, storm: Callable[[], None],
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    first = record(session, intake_policy, clock, "req-1")
    result = step(session, session_factory, deps, connection.id, first)
    session.refresh(connection)
    assert connection.rate_limited_since is not None

    storm()
    assert result.wake_in is not None
    clock.advance(result.wake_in + 0.001)
    assert step(session, session_factory, deps, connection.id, first).state == UploadState.SUBMITTED

    session.refresh(connection)
    assert (connection.health, connection.rate_limited_since) == (Health.HEALTHY, None)
    assert all(e["health"] != "rate_limited_sustained" for e in health_events(events))
    assert [e["health"] for e in health_events(events)] == ["rate_limited", "healthy"]


def test_a_refusal_is_an_answer_too_and_ends_the_storm(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    # given: a sustained storm
    connection.health, connection.rate_limited_since = Health.RATE_LIMITED_SUSTAINED, clock() - timedelta(hours=2)
    session.commit()
    first = record(session, intake_policy, clock, "req-1")
    # when: Personio refuses the document (a 413) instead of answering 429
    sandbox.state.inject_fault(company_id=COMPANY, status=413, count=FOREVER, endpoint="documents")
    result = step(session, session_factory, deps, connection.id, first)
    # then: the upload has its outcome, and the connection is out of the storm
    assert result.state == UploadState.REJECTED
    session.refresh(connection)
    assert (connection.health, connection.rate_limited_since) == (Health.HEALTHY, None)
    assert health_events(events)[-1]["previous"] == "rate_limited_sustained"


# ------------------------------------------------------------- the health check


@pytest.fixture
def checker(http: requests.Session, sandbox: SandboxServer, limiter: CompanyRateLimiter, events: ListPublisher, clock: Clock,
            recorder: SpecValidationRecorder) -> Callable[[Session, Connection], Health]:
    recorder.allow_credential_probe = True  # the probe's empty body is invalid on purpose

    def check(session: Session, connection: Connection) -> Health:
        client = PersonioClient(http, base_url=sandbox.url, credentials=PersonioCredentials(COMPANY, TOKEN), app_id="TEST", timeout=(2, 5))
        return check_connection(
            session, connection, client=client, limiter=limiter,
            refresh=lambda s, c: refresh_jobs(s, c, http=http, feed_url_template=sandbox.feed_url_template, timeout=(2, 5), events=events, now=clock()),
            events=events, lockout=2.0, rate_limited_alert_after=ALERT_AFTER, now=clock(),
        )

    return check


def test_the_health_check_sees_a_sustained_storm_and_its_end(
    session: Session, connection: Connection, storm: Callable[[], None], checker: Callable[[Session, Connection], Health],
    clock: Clock, events: ListPublisher,
) -> None:
    # given: the company has answered only 429 for longer than the threshold
    started = clock() - timedelta(seconds=ALERT_AFTER + 1)
    connection.health, connection.rate_limited_since = Health.RATE_LIMITED, started
    session.commit()

    # when: the health check's probe gets another 429
    # then: sustained, with its one event
    assert checker(session, connection) == Health.RATE_LIMITED_SUSTAINED
    assert health_events(events)[-1]["health"] == "rate_limited_sustained"
    assert health_events(events)[-1]["rate_limited_since"] == started.isoformat()
    assert describe_message(connection)["de"].startswith("Personio lehnt seit")

    # when: checked again during the lock-out (no budget to ask): still sustained, no new event
    count = len(health_events(events))
    assert checker(session, connection) == Health.RATE_LIMITED_SUSTAINED
    assert len(health_events(events)) == count

    # when: the storm is over and the lock-out has passed
    storm()
    clock.advance(3)
    assert checker(session, connection) == Health.HEALTHY
    assert connection.rate_limited_since is None
    assert [e["previous"] for e in health_events(events)[count:]] == ["rate_limited_sustained"]


def describe_message(connection: Connection) -> dict[str, str]:
    from services.connections import health_message

    return health_message(connection)


def test_uploads_of_another_account_of_the_same_company_wait_for_the_same_limit(
    session: Session, cipher: TokenCipher, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: a second account connected to the same Personio company, and one of another company
    other = make_connection(session, cipher, account_id="acct-2", company_id=COMPANY, token=TOKEN, jobs_domain=DOMAIN, at=clock())
    make_link(session, other, project_id=PROJECT, job_position_id=JOB, at=clock())
    elsewhere = make_connection(session, cipher, account_id="acct-3", company_id=COMPANY + 1, token=TOKEN, jobs_domain=DOMAIN, at=clock())
    make_link(session, elsewhere, project_id=PROJECT, job_position_id=JOB, at=clock())
    cv = [{"category": "cv", "filename": "cv.pdf", "content_base64": "JVBERi0xLjQgY3Y="}]
    make_upload(session, intake_policy, clock(), "req-2", account_id="acct-2", project_id=PROJECT, documents=cv)
    make_upload(session, intake_policy, clock(), "req-3", account_id="acct-3", project_id=PROJECT, documents=cv)
    # when: the first account's connection is in a sustained storm
    connection.health, connection.rate_limited_since = Health.RATE_LIMITED_SUSTAINED, clock() - timedelta(hours=2)
    session.commit()
    # then: the same company's upload says it waits for Personio's limit, the other company's does not
    assert status(session, "req-2")["message"]["de"].startswith(WAITING_DE)
    assert status(session, "req-3")["message"] is None
