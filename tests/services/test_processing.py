"""services.processing.process_upload: every state transition of one sending step.

The service function is called directly (not through Celery) with a SyncDeps of fakes: the
rate limiter on fakeredis with the test clock, a real PersonioClient against the
in-process Personio stand-in (or a ``responses``-mocked session), a ListPublisher,
a recording ``wake`` and a fake document fetcher. Uploads are recorded with
``receive_upload`` and claimed with ``dispatch_connection`` as the worker does, each
in its own session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests
import responses
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models import (
    ApplicationClaim,
    Connection,
    Health,
    Job,
    OutboxEvent,
    ProjectLink,
    Upload,
    UploadState,
)
from personio.client import APPLICATIONS_PATH, DOCUMENTS_PATH, PersonioClient, PersonioCredentials
from personio.errors import (
    PersonioAPIError,
    PersonioApplicantExists,
    PersonioFeatureDisabled,
    PersonioUnprocessable,
    PersonioValidationError,
)
from ratelimit import CompanyRateLimiter
from sandbox import SandboxServer
from services.connections import set_health
from services.context import SyncDeps, UploadPolicy
from services.dispatch import dispatch_connection
from services.documents import DocumentFetchError
from services.events import ListPublisher, OutboxPublisher
from services.jobs import refresh_jobs
from services.processing import (
    StepOutcome,
    StepResult,
    backoff_delay,
    build_application,
    process_upload,
)
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from tests.factories import make_connection, make_link, make_upload
from tests.openapi import SpecValidationRecorder
from tests.personio.answers import FIELD_REASONS_400, FILE_NOT_EXISTS, JOB_NOT_PUBLISHED
from tests.services.processing_support import claim, client_factory, load

pytestmark = pytest.mark.rolled_back

if TYPE_CHECKING:
    from tests.conftest import Clock

# The demo company of the stand-in (sandbox/data/demo.json).
COMPANY, TOKEN, DOMAIN, CHANNEL = 1000, "demo-token-please-change", "demo.jobs.personio.de", 4242
JOB, OTHER_JOB = 1000001, 1000002
ACCOUNT, PROJECT = "acct-1", "proj-1"
EMAIL = "Alex.Example@example.org"
CV = b"%PDF-1.4 curriculum vitae of a candidate"
MOCK_BASE = "https://api.personio.de"


# ================================================================= fixtures


class Wakes:
    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def __call__(self, connection_id: int, delay: float) -> None:
        self.calls.append((connection_id, delay))


class FakeFetcher:
    def __init__(self) -> None:
        self.documents: dict[str, bytes | DocumentFetchError] = {}
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        found = self.documents[url]
        if isinstance(found, DocumentFetchError):
            raise found
        return found


class Refresher:
    """Refreshes the jobs cache from the stand-in's feed and counts the calls."""

    def __init__(self, http: requests.Session, sandbox: SandboxServer, events: ListPublisher, clock: Clock) -> None:
        self.calls = 0
        self._http, self._sandbox, self._events, self._clock = http, sandbox, events, clock

    def __call__(self, session: Session, connection: Connection) -> object:
        self.calls += 1
        return refresh_jobs(
            session,
            connection,
            http=self._http,
            feed_url_template=self._sandbox.feed_url_template,
            timeout=(2.0, 5.0),
            events=self._events,
            now=self._clock(),
        )


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher()


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def refresher(http: requests.Session, sandbox: SandboxServer, events: ListPublisher, clock: Clock) -> Refresher:
    return Refresher(http, sandbox, events, clock)


@pytest.fixture
def deps(
    upload_policy: UploadPolicy,
    limiter: CompanyRateLimiter,
    http: requests.Session,
    sandbox: SandboxServer,
    cipher: TokenCipher,
    events: ListPublisher,
    wakes: Wakes,
    fetcher: FakeFetcher,
    refresher: Refresher,
    clock: Clock,
) -> SyncDeps:
    return SyncDeps(
        policy=upload_policy,
        limiter=limiter,
        clients=client_factory(http, sandbox.url, cipher),
        events=events,
        wake=wakes,
        fetch_document=fetcher,
        refresh_jobs=refresher,
        clock=clock,
        rng=random.Random(1234),
    )


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def mocked_deps(deps: SyncDeps, cipher: TokenCipher, mocked: responses.RequestsMock) -> Iterator[SyncDeps]:
    """The same deps, but Personio is a ``responses`` mock (no stand-in involved).

    The mocked answers are made up per test, so only our requests are checked against the spec.
    """
    requests_only = SpecValidationRecorder(validate_responses=False)
    with requests.Session() as session:
        requests_only.attach(session)
        yield replace(deps, clients=client_factory(session, MOCK_BASE, cipher), refresh_jobs=None)
    requests_only.assert_clean(min_exchanges=0)


@pytest.fixture
def connection(session: Session, cipher: TokenCipher, clock: Clock) -> Connection:
    """The demo company connected, its three jobs cached as published, proj-1 -> JOB."""
    connection = make_connection(session, cipher, account_id=ACCOUNT, company_id=COMPANY, token=TOKEN, jobs_domain=DOMAIN,
                                 channel_id=CHANNEL, at=clock(), commit=False)
    for job_id in (JOB, OTHER_JOB, 1000003):
        session.add(Job(connection_id=connection.id, job_position_id=job_id, name=f"Job {job_id}", published=True, first_seen_at=clock(), updated_at=clock()))
    make_link(session, connection, project_id=PROJECT, job_position_id=JOB, at=clock())
    return connection


# ================================================================= helpers


def inline(filename: str = "cv.pdf", content: bytes = CV, category: str = "cv") -> dict[str, Any]:
    return {"category": category, "filename": filename, "content_base64": base64.b64encode(content).decode()}


def record(
    session: Session,
    intake_policy: IntakePolicy,
    clock: Clock,
    *,
    request_id: str = "req-1",
    email: str = EMAIL,
    project_id: str = PROJECT,
    documents: list[dict[str, Any]] | None = None,
    **candidate: Any,
) -> int:
    body: dict[str, Any] = {
        "first_name": "Alex",
        "last_name": "Example",
        "email": email,
        "phone": "+49 30 1234567",
        "location": "Berlin",
        "tags": ["sourced"],
        "documents": [inline()] if documents is None else documents,
    }
    body.update(candidate)
    return make_upload(session, intake_policy, clock(), request_id, account_id=ACCOUNT, project_id=project_id, **body)


def record_for_job_unpublished_in_cache(session: Session, intake_policy: IntakePolicy, clock: Clock) -> int:
    """Mark the linked job unpublished in our jobs cache, then record an upload for it."""
    job = session.scalars(select(Job).where(Job.job_position_id == JOB)).one()
    job.published = False
    session.commit()
    return record(session, intake_policy, clock)


def step(session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, upload_id: int) -> StepResult:
    """Claim the upload and run one processing step for it."""
    upload = session.get(Upload, upload_id)
    assert upload is not None and upload.connection_id is not None
    leases = claim(session, session_factory, deps, upload.connection_id)
    assert upload_id in leases, f"upload {upload_id} was not claimable: {leases}"
    return process_upload(session, deps, upload_id, leases[upload_id])


def after_wait(result: StepResult, clock: Clock) -> None:
    assert result.wake_in is not None
    clock.advance(result.wake_in + 0.001)


def api_requests(sandbox: SandboxServer) -> int:
    stats = sandbox.state.stats()
    return sum(sum(company["statuses"].values()) for company in stats["companies"].values()) + stats["unauthorized"]


def history(upload: Upload) -> list[tuple[str, str | None]]:
    return [(event.state, event.reason_code) for event in upload.events]


def outcome_events(events: ListPublisher) -> list[dict[str, Any]]:
    return [e for e in events.events if e["type"] == "upload.finished"]


# ========================================================== submitted


def test_submitted_with_cv_attached(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher, recorder: SpecValidationRecorder, wakes: Wakes,
) -> None:
    # given
    upload_id = record(session, intake_policy, clock)

    # when
    result = step(session, session_factory, deps, upload_id)

    # then: the step finished the upload
    assert result == StepResult(StepOutcome.FINISHED, connection.id, UploadState.SUBMITTED)
    upload = load(session, upload_id)
    assert upload.state == UploadState.SUBMITTED
    assert upload.reason_code == "personio-sync.submitted"
    assert upload.personio_status == 201
    assert upload.job_position_id == JOB
    assert upload.application_attempts == 1 and upload.attempts == 0
    assert upload.application_unconfirmed is False
    assert upload.confirmed_by_duplicate is False and upload.channel_dropped is False
    assert upload.lease_token is None and upload.lease_until is None
    assert upload.finished_at == clock()
    assert str(JOB) in upload.message_en and str(JOB) in upload.message_de  # type: ignore[operator]
    assert history(upload) == [("queued", None), ("submitted", "personio-sync.submitted")]
    # and: the stand-in has the CV and an application pointing at it
    [document] = sandbox.state.documents(COMPANY)
    assert document["sha256"] == hashlib.sha256(CV).hexdigest()
    assert document["original_filename"] == "cv.pdf"
    assert upload.documents[0].personio_uuid == document["uuid"]
    [application] = sandbox.state.applications(COMPANY)
    assert application["email"] == EMAIL
    assert application["job_position_id"] == JOB
    assert application["recruiting_channel_id"] == CHANNEL
    assert application["file_uuids"] == [document["uuid"]]
    assert application["payload"]["files"] == [{"uuid": document["uuid"], "original_filename": "cv.pdf", "category": "cv"}]
    assert application["payload"]["attributes"] == [{"id": "phone", "value": "+49 30 1234567"}, {"id": "location", "value": "Berlin"}]
    assert application["payload"]["tags"] == ["sourced"]
    # and: the document went first, and everything matched Personio's spec
    timings = sandbox.state.stats(include_timestamps=True)["companies"][str(COMPANY)]["endpoints"]
    assert max(timings["documents"]["timestamps"]) <= min(timings["applications"]["timestamps"])
    recorder.assert_clean(min_exchanges=2)
    # and: one outcome event, ids only
    [event] = outcome_events(events)
    assert (event["request_id"], event["outcome"], event["reason_code"], event["job_position_id"]) == ("req-1", "submitted", "personio-sync.submitted", JOB)
    assert wakes.calls == []  # re-dispatch is the task wrapper's job


def test_submitted_without_documents(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    upload_id = record(session, intake_policy, clock, documents=[], phone=None, location=None, tags=[])

    result = step(session, session_factory, deps, upload_id)

    assert result.state == UploadState.SUBMITTED
    assert sandbox.state.documents() == []
    [application] = sandbox.state.applications()
    assert set(application["payload"]) == {"first_name", "last_name", "email", "job_position_id", "recruiting_channel_id"}


def test_url_document_is_fetched_then_uploaded(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, fetcher: FakeFetcher,
) -> None:
    url = "https://files.example.com/portfolio.zip"
    fetcher.documents[url] = b"PK\x03\x04 zip!"
    upload_id = record(session, intake_policy, clock, documents=[inline(), {"category": "work-sample", "filename": "portfolio.zip", "url": url}])

    result = step(session, session_factory, deps, upload_id)

    assert result.state == UploadState.SUBMITTED
    assert fetcher.calls == [url]
    upload = load(session, upload_id)
    assert upload.documents[1].sha256 == hashlib.sha256(b"PK\x03\x04 zip!").hexdigest()
    assert upload.documents[1].size == 9
    assert sorted(d["original_filename"] for d in sandbox.state.documents()) == ["cv.pdf", "portfolio.zip"]
    assert [f["category"] for f in sandbox.state.applications()[0]["payload"]["files"]] == ["cv", "work-sample"]


def test_same_bytes_twice_in_one_upload_are_uploaded_once(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    upload_id = record(session, intake_policy, clock, documents=[inline("cv.pdf"), inline("cv-copy.pdf", category="other")])

    assert step(session, session_factory, deps, upload_id).state == UploadState.SUBMITTED

    [document] = sandbox.state.documents()
    upload = load(session, upload_id)
    assert [d.personio_uuid for d in upload.documents] == [document["uuid"], document["uuid"]]


# ================================================ documents never uploaded twice


def test_application_5xx_after_documents_parks_and_the_retry_does_not_reupload(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    # given: Personio fails the application once, after the CV went through
    sandbox.state.inject_fault(company_id=COMPANY, status=500, endpoint="applications")
    upload_id = record(session, intake_policy, clock)

    # when: first step
    first = step(session, session_factory, deps, upload_id)

    # then: parked with backoff, one attempt counted, the document uuid kept
    assert first.outcome == StepOutcome.PARKED
    assert first.state == UploadState.QUEUED
    upload = load(session, upload_id)
    assert upload.attempts == 1
    assert 0 < first.wake_in <= deps.policy.backoff_base  # type: ignore[operator]
    assert upload.next_attempt_at == clock() + timedelta(seconds=first.wake_in)  # type: ignore[arg-type]
    assert upload.documents[0].personio_uuid is not None
    assert upload.lease_token is None
    assert len(sandbox.state.documents()) == 1 and sandbox.state.applications() == []
    assert history(upload)[-1] == ("queued", "personio.server_error")
    assert outcome_events(events) == []

    # when: the next step, once due
    after_wait(first, clock)
    second = step(session, session_factory, deps, upload_id)

    # then: submitted, still exactly one document at Personio
    assert second.state == UploadState.SUBMITTED
    [document] = sandbox.state.documents()
    assert sandbox.state.applications()[0]["file_uuids"] == [document["uuid"]]
    assert sandbox.state.stats()["companies"][str(COMPANY)]["endpoints"]["documents"]["accepted"] == 1


def test_budget_running_out_between_documents_resumes_with_the_next_document(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, limiter: CompanyRateLimiter,
) -> None:
    # given: two documents and a budget with room for one request only
    upload_id = record(session, intake_policy, clock, documents=[inline("cv.pdf"), inline("letter.pdf", b"%PDF letter", "cover-letter")])
    for _ in range(19):
        assert limiter.try_acquire(str(COMPANY)).granted

    # when
    first = step(session, session_factory, deps, upload_id)

    # then: one document sent, parked until the window frees, no attempt counted
    assert first.outcome == StepOutcome.PARKED
    assert first.wake_in == pytest.approx(2.0)
    upload = load(session, upload_id)
    assert upload.attempts == 0
    assert [d.personio_uuid is not None for d in upload.documents] == [True, False]
    assert len(sandbox.state.documents()) == 1

    after_wait(first, clock)
    second = step(session, session_factory, deps, upload_id)

    assert second.state == UploadState.SUBMITTED
    assert len(sandbox.state.documents()) == 2
    assert len(sandbox.state.applications()[0]["file_uuids"]) == 2


def test_expired_document_uuid_is_uploaded_again(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
    recorder: SpecValidationRecorder,
) -> None:
    # given: the CV was uploaded, then the application failed and Personio forgot the file
    recorder.outside_spec_statuses.add(503)  # an injected fault Personio does not document
    sandbox.state.inject_fault(company_id=COMPANY, status=503, endpoint="applications")
    upload_id = record(session, intake_policy, clock)
    after_wait(step(session, session_factory, deps, upload_id), clock)
    sandbox.state.reset()

    # when: Personio answers file-not-exists
    second = step(session, session_factory, deps, upload_id)

    # then: the uuids are dropped and the upload retried with backoff
    assert second.outcome == StepOutcome.PARKED
    upload = load(session, upload_id)
    assert upload.documents[0].personio_uuid is None
    assert upload.attempts == 2
    assert history(upload)[-1] == ("queued", "errors.file-validation.file-not-exists")

    after_wait(second, clock)
    assert step(session, session_factory, deps, upload_id).state == UploadState.SUBMITTED
    [document] = sandbox.state.documents()
    assert sandbox.state.applications()[0]["file_uuids"] == [document["uuid"]]


# ============================================================== duplicates


def test_same_email_already_submitted_by_us_is_not_sent_again(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    # given: the candidate went through once
    first_id = record(session, intake_policy, clock, request_id="req-1")
    assert step(session, session_factory, deps, first_id).state == UploadState.SUBMITTED
    stats_before = sandbox.state.stats()

    # when: another upload of the same email (other spelling) for the same job
    second_id = record(session, intake_policy, clock, request_id="req-2", email=EMAIL.upper())
    result = step(session, session_factory, deps, second_id)

    # then
    assert result == StepResult(StepOutcome.FINISHED, connection.id, UploadState.ALREADY_IN_PERSONIO)
    second = load(session, second_id)
    assert second.reason_code == "personio-sync.already-sent"
    assert "already sent" in second.message_en  # type: ignore[operator]
    assert second.documents[0].personio_uuid is None
    assert sandbox.state.stats() == stats_before
    assert [e["outcome"] for e in outcome_events(events)] == ["submitted", "already_in_personio"]


def test_same_email_for_another_job_is_sent(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    make_link(session, connection, project_id="proj-2", job_position_id=OTHER_JOB, at=clock(), commit=False)
    first_id = record(session, intake_policy, clock, request_id="req-1")
    assert step(session, session_factory, deps, first_id).state == UploadState.SUBMITTED

    second_id = record(session, intake_policy, clock, request_id="req-2", project_id="proj-2")
    assert step(session, session_factory, deps, second_id).state == UploadState.SUBMITTED

    assert sorted(a["job_position_id"] for a in sandbox.state.applications()) == [JOB, OTHER_JOB]


def test_personio_duplicate_is_already_in_personio(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: the candidate applied on the career page before
    sandbox.state.commit_application(COMPANY, JOB, {"email": EMAIL.lower(), "first_name": "Alex", "last_name": "Example", "job_position_id": JOB})
    upload_id = record(session, intake_policy, clock)

    # when
    result = step(session, session_factory, deps, upload_id)

    # then
    assert result.state == UploadState.ALREADY_IN_PERSONIO
    upload = load(session, upload_id)
    assert upload.reason_code == "errors.applicant-already-exists"
    assert upload.error_field == "email"
    assert upload.personio_status == 400
    assert upload.confirmed_by_duplicate is False
    assert upload.application_unconfirmed is False
    assert "already applied" in upload.message_en  # type: ignore[operator]
    assert "bereits" in upload.message_de  # type: ignore[operator]
    assert len(sandbox.state.applications()) == 1


def test_lost_answer_then_duplicate_means_our_application_was_created(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: Personio creates the application, then the connection drops
    sandbox.state.inject_fault(company_id=COMPANY, kind="drop_after_commit", endpoint="applications")
    upload_id = record(session, intake_policy, clock)

    # when
    first = step(session, session_factory, deps, upload_id)

    # then: unknown outcome, retried later
    assert first.outcome == StepOutcome.PARKED
    upload = load(session, upload_id)
    assert upload.application_unconfirmed is True
    assert upload.attempts == 1
    assert history(upload)[-1] == ("queued", "personio.unreachable")
    assert len(sandbox.state.applications()) == 1

    # when: the retry is told the applicant exists
    after_wait(first, clock)
    second = step(session, session_factory, deps, upload_id)

    # then: that application is ours
    assert second.state == UploadState.SUBMITTED
    upload = load(session, upload_id)
    assert upload.reason_code == "personio-sync.submitted"
    assert upload.confirmed_by_duplicate is True
    assert upload.application_unconfirmed is False
    assert upload.application_attempts == 2
    assert len(sandbox.state.applications()) == 1


def test_read_timeout_after_commit_is_resolved_the_same_way(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, http: requests.Session, cipher: TokenCipher,
) -> None:
    # a client that waits 0.2 s for an answer Personio sends after 0.5 s
    deps = replace(deps, clients=lambda conn: PersonioClient(
        http, base_url=sandbox.url, credentials=PersonioCredentials(conn.company_id, cipher.decrypt(conn.access_token_encrypted)), app_id="PERSONIO_SYNC", timeout=(2.0, 0.2)
    ))
    sandbox.state.inject_fault(company_id=COMPANY, kind="delay_after_commit", endpoint="applications", delay=0.5)
    upload_id = record(session, intake_policy, clock, documents=[])

    first = step(session, session_factory, deps, upload_id)
    assert first.outcome == StepOutcome.PARKED
    assert history(load(session, upload_id))[-1] == ("queued", "personio.timeout")
    after_wait(first, clock)

    assert step(session, session_factory, deps, upload_id).state == UploadState.SUBMITTED
    assert load(session, upload_id).confirmed_by_duplicate is True
    assert len(sandbox.state.applications()) == 1


def test_refused_connection_on_the_application_is_not_mistaken_for_a_sent_one(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: the application POST never left (connection refused), and meanwhile the
    # candidate applied by another way
    refused = requests.ConnectionError("Max retries exceeded (Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused'))")
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, body=refused)
    upload_id = record(session, intake_policy, clock, documents=[])
    first = step(session, session_factory, mocked_deps, upload_id)
    assert first.outcome == StepOutcome.PARKED
    assert load(session, upload_id).application_unconfirmed is False

    # when
    mocked.replace(responses.POST, MOCK_BASE + APPLICATIONS_PATH, status=400, json={"errors": [{"field": "email", "errors": [{"reason": "errors.applicant-already-exists"}]}]})
    after_wait(first, clock)
    second = step(session, session_factory, mocked_deps, upload_id)

    # then: the existing application is not ours
    assert second.state == UploadState.ALREADY_IN_PERSONIO
    assert load(session, upload_id).confirmed_by_duplicate is False


def test_second_upload_of_a_candidate_in_flight_waits_for_the_first(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: the first upload holds the claim and is parked after a 500
    sandbox.state.inject_fault(company_id=COMPANY, status=500, endpoint="applications")
    first_id = record(session, intake_policy, clock, request_id="req-1")
    step(session, session_factory, deps, first_id)
    requests_before = api_requests(sandbox)
    second_id = record(session, intake_policy, clock, request_id="req-2")

    # when
    result = step(session, session_factory, deps, second_id)

    # then: parked without sending or counting an attempt
    assert result.outcome == StepOutcome.PARKED
    assert result.wake_in == pytest.approx(max(deps.policy.lockout / 4, 1.0))
    assert load(session, second_id).attempts == 0
    assert api_requests(sandbox) == requests_before
    claim_row = session.scalars(select(ApplicationClaim)).one()
    assert claim_row.upload_id == first_id


def test_claim_of_a_rejected_upload_passes_to_the_next_one(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: the first upload was refused by Personio (unknown custom attribute)
    first_id = record(session, intake_policy, clock, request_id="req-1", documents=[], attributes={"custom_attribute_99": "x"})
    assert step(session, session_factory, deps, first_id).state == UploadState.REJECTED

    # when: a corrected upload of the same candidate
    second_id = record(session, intake_policy, clock, request_id="req-2", documents=[])
    result = step(session, session_factory, deps, second_id)

    # then
    assert result.state == UploadState.SUBMITTED
    assert session.scalars(select(ApplicationClaim)).one().upload_id == second_id


# ===================================================================== 429


def test_429_parks_for_the_lockout_and_locks_the_company_out(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, limiter: CompanyRateLimiter, events: ListPublisher,
) -> None:
    # given: Personio answers 429 (no Retry-After, like the real one)
    sandbox.state.inject_fault(company_id=COMPANY, status=429, endpoint="applications")
    upload_id = record(session, intake_policy, clock)

    # when
    result = step(session, session_factory, deps, upload_id)

    # then: parked for at least the lock-out, attempts not counted
    assert result.outcome == StepOutcome.PARKED
    assert result.wake_in is not None and result.wake_in >= deps.policy.lockout
    upload = load(session, upload_id)
    assert upload.attempts == 0
    assert upload.next_attempt_at >= clock() + timedelta(seconds=deps.policy.lockout)
    assert upload.application_unconfirmed is False  # a 429 created nothing
    assert history(upload)[-1] == ("queued", "Personio answered 429; company locked out")
    # and: the shared limiter refuses every request of the company for the lock-out
    assert limiter.lockout_remaining(str(COMPANY)) == pytest.approx(deps.policy.lockout)
    assert limiter.peek(str(COMPANY)).locked_out is True
    session.refresh(connection)
    assert connection.health == Health.RATE_LIMITED
    assert any(e["type"] == "connection.health" and e["health"] == "rate_limited" for e in events.events)
    # and: dispatching now claims nothing and says when to come back
    session.commit()
    with session_factory.begin() as dispatcher:
        dispatched = dispatch_connection(dispatcher, connection.id, policy=deps.policy, limiter=limiter, now=clock())
    assert dispatched.claimed == [] and dispatched.wake_in == pytest.approx(deps.policy.lockout)

    # when: the lock-out is over
    after_wait(result, clock)
    assert step(session, session_factory, deps, upload_id).state == UploadState.SUBMITTED
    # then: the connection is healthy again, and says so
    session.refresh(connection)
    assert connection.health == Health.HEALTHY
    assert events.events[-1]["type"] == "connection.health" and events.events[-1]["previous"] == "rate_limited"


def test_429_retry_after_is_honoured(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, limiter: CompanyRateLimiter,
) -> None:
    mocked.post(MOCK_BASE + DOCUMENTS_PATH, status=429, headers={"Retry-After": "7"})
    upload_id = record(session, intake_policy, clock)

    result = step(session, session_factory, mocked_deps, upload_id)

    assert result.outcome == StepOutcome.PARKED
    assert 7.0 <= result.wake_in <= 7.0 * 1.05  # type: ignore[operator]
    assert limiter.lockout_remaining(str(COMPANY)) == pytest.approx(7.0)
    assert load(session, upload_id).attempts == 0


@pytest.fixture
def claimed_then_budget_spent(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, limiter: CompanyRateLimiter,
) -> tuple[int, str]:
    """(upload id, lease): an upload claimed for its step, then other workers spend the company's whole budget."""
    upload_id = record(session, intake_policy, clock)
    leases = claim(session, session_factory, deps, connection.id)
    for _ in range(20):
        assert limiter.try_acquire(str(COMPANY)).granted
    return upload_id, leases[upload_id]


def test_budget_exhausted_parks_with_the_wait_and_sends_nothing(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    clock: Clock, limiter: CompanyRateLimiter, claimed_then_budget_spent: tuple[int, str],
) -> None:
    upload_id, lease = claimed_then_budget_spent

    # when
    result = process_upload(session, deps, upload_id, lease)

    # then
    assert result.outcome == StepOutcome.PARKED
    assert result.wake_in == pytest.approx(2.0)
    upload = load(session, upload_id)
    assert upload.state == UploadState.QUEUED
    assert upload.attempts == 0 and upload.application_attempts == 0
    assert upload.next_attempt_at <= clock()  # it keeps its place in the company's line
    assert history(upload)[-1] == ("queued", "waiting for the company's Personio rate budget")
    assert api_requests(sandbox) == 0
    # and: dispatch holds it back until the budget frees
    connection_id = connection.id
    session.commit()
    with session_factory.begin() as dispatcher:
        assert dispatch_connection(dispatcher, connection_id, policy=deps.policy, limiter=limiter, now=clock()).claimed == []


def test_half_sent_upload_resumes_before_the_backlog_starts_new_ones(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, limiter: CompanyRateLimiter,
) -> None:
    # given: an upload whose CV went out, then the budget ran out before its application
    started = record(session, intake_policy, clock, request_id="started", email="started@example.org")
    clock.advance(1)
    backlog = [record(session, intake_policy, clock, request_id=f"b{n}", email=f"b{n}@example.org") for n in range(3)]
    leases = claim(session, session_factory, replace(deps, policy=replace(deps.policy, company_concurrency=1)), connection.id)
    assert list(leases) == [started]
    for _ in range(19):
        assert limiter.try_acquire(str(COMPANY)).granted
    result = process_upload(session, deps, started, leases[started])
    assert result.outcome == StepOutcome.PARKED and load(session, started).documents[0].personio_uuid is not None

    # when: the budget frees again
    after_wait(result, clock)
    next_claims = claim(session, session_factory, replace(deps, policy=replace(deps.policy, company_concurrency=1)), connection.id)

    # then: the half-sent upload goes before any new upload of the backlog
    assert list(next_claims) == [started]
    assert all(load(session, b).state == UploadState.QUEUED for b in backlog)


# ========================================================= transient errors


def test_server_errors_back_off_and_fail_after_max_attempts(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    # given: Personio fails every document upload
    sandbox.state.inject_fault(company_id=COMPANY, status=500, endpoint="documents", count=10)
    upload_id = record(session, intake_policy, clock)
    waits = []

    # when: max_attempts (3) steps
    for attempt in (1, 2):
        result = step(session, session_factory, deps, upload_id)
        assert result.outcome == StepOutcome.PARKED
        assert load(session, upload_id).attempts == attempt
        ceiling = min(deps.policy.backoff_cap, deps.policy.backoff_base * 2 ** (attempt - 1))
        assert ceiling / 2 <= result.wake_in <= ceiling  # type: ignore[operator]
        waits.append(result.wake_in)
        after_wait(result, clock)
    last = step(session, session_factory, deps, upload_id)

    # then
    assert last == StepResult(StepOutcome.FINISHED, connection.id, UploadState.FAILED)
    upload = load(session, upload_id)
    assert upload.attempts == 3
    assert upload.reason_code == "personio-sync.retries-exhausted"
    assert "after 3 attempts" in upload.message_en  # type: ignore[operator]
    assert "nach 3 Versuchen" in upload.message_de  # type: ignore[operator]
    assert upload.finished_at == clock()
    assert [s for s, _ in history(upload)] == ["queued", "queued", "queued", "failed"]
    assert [e["outcome"] for e in outcome_events(events)] == ["failed"]
    assert sandbox.state.applications() == []


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (requests.ReadTimeout("read timed out"), "personio.timeout"),
        (requests.ConnectTimeout("connect timed out"), "personio.timeout"),
        (requests.ConnectionError("Connection refused"), "personio.unreachable"),
        (503, "personio.server_error"),
        (502, "personio.server_error"),
    ],
)
def test_transient_failures_back_off_and_count(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, failure: Exception | int, reason: str,
) -> None:
    if isinstance(failure, int):
        mocked.post(MOCK_BASE + DOCUMENTS_PATH, status=failure)
    else:
        mocked.post(MOCK_BASE + DOCUMENTS_PATH, body=failure)
    upload_id = record(session, intake_policy, clock)

    result = step(session, session_factory, mocked_deps, upload_id)

    assert result.outcome == StepOutcome.PARKED
    upload = load(session, upload_id)
    assert upload.attempts == 1
    assert history(upload)[-1] == ("queued", reason)
    assert upload.documents[0].personio_uuid is None


def test_backoff_is_capped_and_never_zero(upload_policy: UploadPolicy, deps: SyncDeps) -> None:
    delays = [backoff_delay(attempt, deps) for attempt in range(1, 30) for _ in range(5)]

    assert all(0 < delay <= upload_policy.backoff_cap for delay in delays)
    assert max(delays) > upload_policy.backoff_cap / 2


def test_transient_document_download_failure_backs_off(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, fetcher: FakeFetcher,
) -> None:
    url = "https://files.example.com/cv.pdf"
    fetcher.documents[url] = DocumentFetchError("personio-sync.document-fetch-failed", "HTTP 503", permanent=False)
    upload_id = record(session, intake_policy, clock, documents=[{"category": "cv", "filename": "cv.pdf", "url": url}])

    result = step(session, session_factory, deps, upload_id)

    assert result.outcome == StepOutcome.PARKED
    upload = load(session, upload_id)
    assert upload.attempts == 1
    assert history(upload)[-1] == ("queued", "document download failed (HTTP 503)")
    assert api_requests(sandbox) == 0


# ========================================================== permanent refusals


# file-not-exists earns one re-upload first and not-published checks the job again: both have
# their own tests.
PERMANENT_400 = [(code, field) for code, field in FIELD_REASONS_400 if code not in {FILE_NOT_EXISTS, JOB_NOT_PUBLISHED}]


@pytest.mark.parametrize(("code", "field"), PERMANENT_400)
def test_permanent_400_rejects_with_code_field_and_both_messages(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher, code: str, field: str,
) -> None:
    # given
    body = {"errors": [{"field": field, "type": "FieldError", "errors": [{"reason": code}]}]}
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=400, json=body)
    upload_id = record(session, intake_policy, clock, documents=[])

    # when
    result = step(session, session_factory, mocked_deps, upload_id)

    # then
    assert result == StepResult(StepOutcome.FINISHED, connection.id, UploadState.REJECTED)
    upload = load(session, upload_id)
    assert upload.reason_code == code
    assert upload.error_field == field
    assert upload.personio_status == 400
    assert upload.application_unconfirmed is False
    assert upload.attempts == 0 and upload.application_attempts == 1
    for message in (upload.message_en, upload.message_de):
        assert message and "{" not in message
        assert code not in message  # a real text, not the fallback quoting the code
    assert [e["reason_code"] for e in outcome_events(events)] == [code]
    assert len(mocked.calls) == 1


def test_personio_refusal_from_the_stand_in_names_the_attribute(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    upload_id = record(session, intake_policy, clock, attributes={"custom_attribute_99": "x"})

    result = step(session, session_factory, deps, upload_id)

    assert result.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert (upload.reason_code, upload.error_field) == ("errors.attribute-validation.unknown", "custom_attribute_99")
    assert "custom_attribute_99" in upload.message_en and "custom_attribute_99" in upload.message_de  # type: ignore[operator]


def test_refused_document_type_rejects_naming_the_file(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    mocked.post(MOCK_BASE + DOCUMENTS_PATH, status=422, json={"errors": [{"field": "file", "errors": [{"reason": "errors.invalid-file-type"}]}]})
    upload_id = record(session, intake_policy, clock)

    result = step(session, session_factory, mocked_deps, upload_id)

    assert result.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert upload.reason_code == "errors.invalid-file-type"
    assert upload.personio_status == 422
    assert upload.error_field == "candidate.documents.0"  # as the main app sent it
    assert "'cv.pdf'" in upload.message_en  # type: ignore[operator]
    assert not any(call.request.url.endswith(APPLICATIONS_PATH) for call in mocked.calls)


def test_forbidden_document_url_rejects_naming_the_document(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, fetcher: FakeFetcher,
) -> None:
    url = "https://files.example.com/big.pdf"
    fetcher.documents[url] = DocumentFetchError("personio-sync.document-too-large", "more than 2097152 bytes", permanent=True)
    upload_id = record(session, intake_policy, clock, documents=[inline(), {"category": "other", "filename": "big.pdf", "url": url}])

    result = step(session, session_factory, deps, upload_id)

    assert result.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert upload.reason_code == "personio-sync.document-too-large"
    assert upload.error_field == "candidate.documents.1.url"
    assert "'big.pdf'" in upload.message_en and "2 MiB" in upload.message_en  # type: ignore[operator]
    assert sandbox.state.applications() == []


def test_a_failed_download_is_explained_in_german_in_german(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, fetcher: FakeFetcher,
) -> None:
    url = "https://files.example.com/empty.pdf"
    fetcher.documents[url] = DocumentFetchError("personio-sync.document-fetch-failed", "empty file", permanent=True, detail_de="leere Datei")
    upload_id = record(session, intake_policy, clock, documents=[{"category": "other", "filename": "empty.pdf", "url": url}])

    result = step(session, session_factory, deps, upload_id)

    assert result.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert "(empty file)" in upload.message_en  # type: ignore[operator]
    assert "(leere Datei)" in upload.message_de and "empty file" not in upload.message_de  # type: ignore[operator]


# ====================================================== held and resumed


def test_401_marks_credentials_invalid_and_holds_the_upload(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher, cipher: TokenCipher,
) -> None:
    # given: the admin reset the token in Personio
    company = sandbox.state.company(COMPANY)
    assert company is not None
    company.access_token = "new-token-after-reset"
    sandbox.state.upsert_company(company)
    upload_id = record(session, intake_policy, clock)

    # when
    result = step(session, session_factory, deps, upload_id)

    # then: held, not failed
    assert result == StepResult(StepOutcome.HELD, connection.id, UploadState.HELD)
    upload = load(session, upload_id)
    assert upload.state == UploadState.HELD
    assert not upload.is_terminal
    assert upload.reason_code == "health.invalid_credentials"
    assert upload.message_en.startswith("The upload waits until the Personio connection works again")  # type: ignore[union-attr]
    assert "API credentials" in upload.message_en  # type: ignore[operator]
    assert upload.message_de.startswith("Der Upload wartet")  # type: ignore[union-attr]
    assert upload.lease_token is None
    assert upload.attempts == 0
    assert upload.application_unconfirmed is False
    assert history(upload)[-1] == ("held", "health.invalid_credentials")
    connection = session.get(Connection, connection.id)  # type: ignore[assignment]
    assert connection.health == Health.INVALID_CREDENTIALS
    assert connection.health_reason == "personio.unauthorized"
    assert outcome_events(events) == []
    [health_event] = [e for e in events.events if e["type"] == "connection.health"]
    assert health_event["health"] == "invalid_credentials" and health_event["previous"] == "healthy"

    # when: a second upload arrives while the connection is broken
    requests_before = api_requests(sandbox)
    second_id = record(session, intake_policy, clock, request_id="req-2", email="other@example.org")
    assert step(session, session_factory, deps, second_id).outcome == StepOutcome.HELD
    assert api_requests(sandbox) == requests_before  # held without asking Personio

    # when: the admin enters the new token and the connection is healthy again
    connection.access_token_encrypted = cipher.encrypt("new-token-after-reset")
    session.commit()
    assert set_health(session, connection, Health.HEALTHY, None, now=clock(), events=events) is True

    # then: both uploads are queued again, due now, messages cleared
    for held_id in (upload_id, second_id):
        resumed = load(session, held_id)
        assert resumed.state == UploadState.QUEUED
        assert resumed.next_attempt_at == clock()
        assert resumed.reason_code is None and resumed.message_en is None
        assert history(resumed)[-1] == ("queued", "connection works again")
    assert events.events[-1]["resumed_uploads"] == 2

    # and: they go through
    leases = claim(session, session_factory, deps, connection.id)
    assert set(leases) == {upload_id, second_id}
    assert {process_upload(session, deps, i, t).state for i, t in leases.items()} == {UploadState.SUBMITTED}


@pytest.mark.parametrize(("change", "reason"), [({"recruiting_enabled": False}, "feature.recruiting.disabled"), ({"public_api_enabled": False}, "feature.public-api.disabled")])
def test_403_marks_recruiting_disabled_and_holds(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher, change: dict[str, bool], reason: str,
) -> None:
    sandbox.state.patch_company(COMPANY, change)
    upload_id = record(session, intake_policy, clock)

    result = step(session, session_factory, deps, upload_id)

    assert result.outcome == StepOutcome.HELD
    upload = load(session, upload_id)
    assert upload.state == UploadState.HELD
    assert upload.reason_code == "health.recruiting_disabled"
    session.refresh(connection)
    assert connection.health == Health.RECRUITING_DISABLED
    assert connection.health_reason == reason

    # the plan is fixed: held uploads resume
    sandbox.state.patch_company(COMPANY, {k: True for k in change})
    set_health(session, connection, Health.HEALTHY, None, now=clock(), events=events)
    assert load(session, upload_id).state == UploadState.QUEUED
    assert step(session, session_factory, deps, upload_id).state == UploadState.SUBMITTED


def test_set_health_between_non_holding_states_resumes_nothing(
    session: Session, deps: SyncDeps, connection: Connection, intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    upload_id = record(session, intake_policy, clock)

    set_health(session, connection, Health.FEED_DISABLED, "feed.html", now=clock(), events=events)
    set_health(session, connection, Health.HEALTHY, None, now=clock(), events=events)

    assert load(session, upload_id).state == UploadState.QUEUED
    assert [e["resumed_uploads"] for e in events.events] == [0, 0]


# ================================================================ channel


def test_unknown_channel_flags_the_connection_and_sends_without_channel(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    # given: a channel id Personio does not know
    connection.channel_id = 999
    session.commit()
    upload_id = record(session, intake_policy, clock)

    # when
    result = step(session, session_factory, deps, upload_id)

    # then: submitted without the channel, and the recruiter is told so
    assert result.state == UploadState.SUBMITTED
    upload = load(session, upload_id)
    assert upload.channel_dropped is True
    assert upload.reason_code == "personio-sync.submitted-without-channel"
    assert "without the channel attribution" in upload.message_en  # type: ignore[operator]
    assert upload.application_attempts == 2
    [application] = sandbox.state.applications()
    assert application["recruiting_channel_id"] is None
    assert "recruiting_channel_id" not in application["payload"]
    assert len(sandbox.state.documents()) == 1
    # and: the connection says its channel is invalid
    session.refresh(connection)
    assert connection.health == Health.CHANNEL_INVALID
    assert connection.channel_invalid_at == clock()
    assert any(e["type"] == "connection.health" and e["health"] == "channel_invalid" for e in events.events)

    # when: the next candidate of this connection
    second_id = record(session, intake_policy, clock, request_id="req-2", email="b@example.org", documents=[])
    second = step(session, session_factory, deps, second_id)

    # then: sent straight away without the channel
    assert second.state == UploadState.SUBMITTED
    assert load(session, second_id).application_attempts == 1
    assert load(session, second_id).channel_dropped is True


def test_channel_refusal_without_a_channel_sent_does_not_loop(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: no channel configured, and Personio (wrongly) keeps saying channel-not-found
    connection.channel_id = None
    session.commit()
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=400, json={"errors": [{"field": "recruiting_channel_id", "errors": [{"reason": "errors.posting-validation.channel-not-found"}]}]})
    upload_id = record(session, intake_policy, clock, documents=[])

    # when
    result = step(session, session_factory, mocked_deps, upload_id)

    # then: one request, refused for good (resending the same body cannot help)
    assert len(mocked.calls) == 1
    assert result.state == UploadState.REJECTED
    assert load(session, upload_id).reason_code == "errors.posting-validation.channel-not-found"


# =================================================================== jobs


def test_job_unpublished_in_cache_and_feed_is_rejected_and_the_link_flagged(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, refresher: Refresher,
) -> None:
    # given: the job was closed in Personio and our cache knows it
    company = sandbox.state.company(COMPANY)
    assert company is not None
    company.jobs = [job for job in company.jobs if job.id != JOB]
    sandbox.state.upsert_company(company)
    upload_id = record_for_job_unpublished_in_cache(session, intake_policy, clock)

    # when
    result = step(session, session_factory, deps, upload_id)

    # then: refreshed once, still unpublished: rejected without calling the API
    assert refresher.calls == 1
    assert result.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert upload.reason_code == "personio-sync.job-not-published"
    assert upload.error_field == "project_id"
    assert str(JOB) in upload.message_en  # type: ignore[operator]
    link = session.scalars(select(ProjectLink)).one()
    assert link.flag == "job_not_published"
    assert link.flagged_at == clock()
    assert api_requests(sandbox) == 0


def test_job_missing_from_a_stale_cache_is_found_by_the_refresh(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, refresher: Refresher,
) -> None:
    upload_id = record_for_job_unpublished_in_cache(session, intake_policy, clock)

    result = step(session, session_factory, deps, upload_id)

    assert refresher.calls == 1
    assert result.state == UploadState.SUBMITTED
    assert session.scalars(select(Job).where(Job.job_position_id == JOB)).one().published is True


def test_feed_trouble_does_not_block_an_upload(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, refresher: Refresher, recorder: SpecValidationRecorder,
) -> None:
    # given: the job is not cached and the feed is down: Personio decides
    recorder.outside_spec_statuses.add(503)  # the feed's injected outage
    session.delete(session.scalars(select(Job).where(Job.job_position_id == JOB)).one())
    session.commit()
    sandbox.state.patch_company(COMPANY, {"feed_mode": "server_error"})
    upload_id = record(session, intake_policy, clock)

    result = step(session, session_factory, deps, upload_id)

    assert refresher.calls == 1
    assert result.state == UploadState.SUBMITTED


def test_personio_saying_not_published_rejects_and_flags_the_link(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, refresher: Refresher,
) -> None:
    # given: the cache still says published, Personio knows better
    company = sandbox.state.company(COMPANY)
    assert company is not None
    company.jobs[0].published = False
    sandbox.state.upsert_company(company)
    upload_id = record(session, intake_policy, clock, documents=[])

    result = step(session, session_factory, deps, upload_id)

    assert refresher.calls == 0
    assert result.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert (upload.reason_code, upload.error_field) == ("errors.job-position.not-published", "job_position_id")
    assert session.scalars(select(ProjectLink)).one().flag == "job_not_published"


def test_project_not_linked_is_rejected(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    upload_id = record(session, intake_policy, clock, project_id="proj-without-link")

    result = step(session, session_factory, deps, upload_id)

    assert result.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert (upload.reason_code, upload.error_field) == ("personio-sync.project-not-linked", "project_id")
    assert "Link the project" in upload.message_en  # type: ignore[operator]
    assert api_requests(sandbox) == 0


def test_connection_removed_after_the_claim_is_rejected(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    connection_id = connection.id
    upload_id = record(session, intake_policy, clock)
    leases = claim(session, session_factory, deps, connection_id)
    with session_factory() as admin:
        admin.delete(admin.get(Connection, connection_id))
        admin.commit()
    session.expire_all()

    result = process_upload(session, deps, upload_id, leases[upload_id])

    assert result.state == UploadState.REJECTED
    assert load(session, upload_id).reason_code == "personio-sync.connection-not-found"
    assert api_requests(sandbox) == 0


# ================================================================== stale


def test_stale_lease_token_sends_nothing(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    upload_id = record(session, intake_policy, clock)
    leases = claim(session, session_factory, deps, connection.id)

    result = process_upload(session, deps, upload_id, "00000000-0000-0000-0000-000000000000")

    assert result == StepResult(StepOutcome.STALE, connection.id, UploadState.SENDING)
    upload = load(session, upload_id)
    assert upload.state == UploadState.SENDING and upload.lease_token == leases[upload_id]
    assert api_requests(sandbox) == 0


def test_duplicate_message_for_a_finished_upload_is_stale(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    upload_id = record(session, intake_policy, clock)
    leases = claim(session, session_factory, deps, connection.id)
    assert process_upload(session, deps, upload_id, leases[upload_id]).state == UploadState.SUBMITTED
    before = api_requests(sandbox)

    again = process_upload(session, deps, upload_id, leases[upload_id])

    assert again.outcome == StepOutcome.STALE
    assert again.state == UploadState.SUBMITTED
    assert api_requests(sandbox) == before


def test_unknown_upload_is_stale(session: Session, deps: SyncDeps, connection: Connection) -> None:
    assert process_upload(session, deps, 999_999, "x") == StepResult(StepOutcome.STALE, None, None)


# ================================================================= events


def test_outcome_events_carry_no_candidate_data(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, sandbox: SandboxServer,
    intake_policy: IntakePolicy, clock: Clock, events: ListPublisher,
) -> None:
    # given: one submitted, one already sent, one refused
    candidates: list[dict[str, Any]] = [
        {"request_id": "req-1"},
        {"request_id": "req-2"},
        {"request_id": "req-3", "email": "zoe.private@example.org", "first_name": "Zoe", "last_name": "Private", "attributes": {"custom_attribute_77": "x"}},
    ]

    # when
    outcomes = [step(session, session_factory, deps, record(session, intake_policy, clock, **candidate)).state for candidate in candidates]

    # then
    assert outcomes == [UploadState.SUBMITTED, UploadState.ALREADY_IN_PERSONIO, UploadState.REJECTED]
    finished = outcome_events(events)
    assert [e["request_id"] for e in finished] == ["req-1", "req-2", "req-3"]
    text = json.dumps(events.events, ensure_ascii=False)
    for secret in (EMAIL, EMAIL.lower(), "zoe.private@example.org", "Alex", "Zoe", "Private", "+49 30 1234567", "Berlin"):
        assert secret not in text
    for event in finished:
        assert set(event) == {"type", "request_id", "account_id", "project_id", "outcome", "reason_code", "field", "job_position_id", "message_en", "message_de", "at"}


def test_outcome_event_is_committed_with_the_outcome(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: the step publishes into its own session, as the worker does (the outbox)
    upload_id = record(session, intake_policy, clock)

    # when
    result = step(session, session_factory, replace(deps, events=OutboxPublisher(session)), upload_id)

    # then: another session sees the outcome and its event together
    assert result.state == UploadState.SUBMITTED
    with session_factory() as reader:
        [row] = reader.scalars(select(OutboxEvent)).all()
        assert reader.get(Upload, upload_id).state == UploadState.SUBMITTED  # type: ignore[union-attr]
    assert (row.type, row.payload["request_id"], row.payload["outcome"]) == ("upload.finished", "req-1", "submitted")


def test_build_application_maps_candidate_fields(session: Session, connection: Connection, intake_policy: IntakePolicy, clock: Clock) -> None:
    upload_id = record(
        session, intake_policy, clock, documents=[], message="Hi", application_date="2024-01-02", attributes={"gender": "female", "custom_attribute_1": "x"}, first_name="  Alex "
    )
    upload = load(session, upload_id)

    body = build_application(upload, JOB, None)

    assert body == {
        "first_name": "Alex",
        "last_name": "Example",
        "email": EMAIL,
        "job_position_id": JOB,
        "message": "Hi",
        "application_date": "2024-01-02",
        "tags": ["sourced"],
        "attributes": [
            {"id": "phone", "value": "+49 30 1234567"},
            {"id": "location", "value": "Berlin"},
            {"id": "gender", "value": "female"},
            {"id": "custom_attribute_1", "value": "x"},
        ],
    }
    assert build_application(upload, JOB, CHANNEL)["recruiting_channel_id"] == CHANNEL


# ================================================================= fencing and transactions
# A step owns its upload exclusively, and holds no database transaction while a remote host
# answers.


class _Watching(PersonioClient):
    """The real client, calling ``before`` ahead of every request it sends."""

    before: Callable[[str], None]

    def _request(self, path: str, **kwargs: Any) -> Any:  # type: ignore[override]
        self.before(path)
        return super()._request(path, **kwargs)


def _watched(deps: SyncDeps, before: Callable[[str], None]) -> SyncDeps:
    build = deps.clients

    def clients(connection: Connection) -> PersonioClient:
        client = build(connection)
        client.__class__ = _Watching
        client.before = before  # type: ignore[attr-defined]
        return client

    return replace(deps, clients=clients)


def test_no_transaction_is_open_while_personio_answers(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, sandbox: SandboxServer,
) -> None:
    upload_id = record(session, intake_policy, clock, documents=[inline(), inline("letter.pdf", b"%PDF-1.4 letter", "cover-letter")])
    seen: list[tuple[str, bool]] = []
    watched = _watched(deps, lambda path: seen.append((path, session.in_transaction())))
    lease = claim(session, session_factory, deps, connection.id)[upload_id]

    result = process_upload(session, watched, upload_id, lease)

    assert result.outcome == StepOutcome.FINISHED
    assert [path for path, _ in seen] == ["/v1/recruiting/applications/documents"] * 2 + ["/v1/recruiting/applications"]
    assert not any(open_ for _, open_ in seen), seen


def test_no_transaction_is_open_during_a_document_download(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock,
) -> None:
    allowed = replace(intake_policy, document_url_hosts=("files.example.com",))
    upload_id = record(session, allowed, clock, documents=[{"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com/cv.pdf"}])
    during: list[bool] = []

    def fetch(url: str) -> bytes:
        during.append(session.in_transaction())
        return b"%PDF-1.4 downloaded"

    lease = claim(session, session_factory, deps, connection.id)[upload_id]
    result = process_upload(session, replace(deps, fetch_document=fetch), upload_id, lease)

    assert result.outcome == StepOutcome.FINISHED
    assert during == [False]


def test_a_second_delivery_of_the_same_claim_does_nothing(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, sandbox: SandboxServer,
) -> None:
    """A redelivered message arrives while the first step is still waiting on Personio."""
    upload_id = record(session, intake_policy, clock)
    lease = claim(session, session_factory, deps, connection.id)[upload_id]
    second: list[Any] = []

    def run_the_duplicate(path: str) -> None:
        if not second:
            with session_factory() as other:
                second.append(process_upload(other, deps, upload_id, lease))

    result = process_upload(session, _watched(deps, run_the_duplicate), upload_id, lease)

    assert result.outcome == StepOutcome.FINISHED
    assert second[0].outcome == StepOutcome.STALE
    assert len(requests.get(f"{sandbox.url}/_sandbox/applications", timeout=5).json()) == 1
    assert len(requests.get(f"{sandbox.url}/_sandbox/documents", timeout=5).json()) == 1


def test_a_step_whose_lease_was_taken_back_stops_before_its_next_request(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, sandbox: SandboxServer,
) -> None:
    """The reconciler re-queued the upload (lease expired) while its CV was uploading."""
    upload_id = record(session, intake_policy, clock)
    lease = claim(session, session_factory, deps, connection.id)[upload_id]
    sent: list[str] = []

    def reconciler_strikes(path: str) -> None:
        sent.append(path)
        if len(sent) == 1:
            with session_factory() as other:
                other.execute(update(Upload).where(Upload.id == upload_id).values(state=UploadState.QUEUED, lease_token=None, lease_until=None))
                other.commit()

    result = process_upload(session, _watched(deps, reconciler_strikes), upload_id, lease)

    assert result.outcome == StepOutcome.STALE
    assert sent == ["/v1/recruiting/applications/documents"]  # no application POST after losing the lease
    upload = load(session, upload_id)
    assert upload.state == UploadState.QUEUED  # the reconciler's state stands
    assert requests.get(f"{sandbox.url}/_sandbox/applications", timeout=5).json() == []


# ====================================================== misread answers (table)

# status × body of Personio, sent through the real client; what it must be read as, and
# what the recruiter reads in English and German (``must``: in the text; ``never``: not).
MISREAD = [
    pytest.param(
        DOCUMENTS_PATH, 422, {"errors": [{"status": "422", "title": "Unprocessable Entity", "detail": "The document could not be processed"}]}, 1,
        PersonioUnprocessable, "personio.unprocessable", UploadState.REJECTED,
        ["Personio refused the request (422).", "The document could not be processed"],
        ["Personio hat die Anfrage (422) abgelehnt.", "The document could not be processed"],
        ["file type", "Dateityp", "'cv.pdf'"],
        id="422-without-reason-is-a-generic-refusal",
    ),
    pytest.param(
        APPLICATIONS_PATH, 400, {"errors": [{"field": "files", "errors": [{"reason": "errors.invalid-file-type"}]}]}, 1,
        PersonioValidationError, "errors.invalid-file-type", UploadState.REJECTED,
        ["file type of 'cv.pdf'"], ["Dateityp von 'cv.pdf'"], ["'?'"],
        id="application-file-error-names-the-only-file",
    ),
    pytest.param(
        APPLICATIONS_PATH, 400, {"errors": [{"field": "files", "errors": [{"reason": "errors.file-too-big"}]}]}, 2,
        PersonioValidationError, "errors.file-too-big", UploadState.REJECTED,
        ["The size of a document exceeds"], ["Die Größe von einem Dokument"], ["'?'", "?"],
        id="application-file-error-of-unknown-file-says-a-document",
    ),
    pytest.param(
        APPLICATIONS_PATH, 400, {"errors": [{"status": "400", "title": "Bad Request", "detail": "Malformed JSON in request body"}]}, 0,
        PersonioValidationError, "personio.bad_request", UploadState.REJECTED,
        ["(400)", "Malformed JSON in request body"], ["(400)", "Malformed JSON in request body"], ["?"],
        id="reasonless-400-keeps-the-detail",
    ),
    pytest.param(
        APPLICATIONS_PATH, 404, {"errors": [{"status": "404", "title": "Not Found", "detail": "No applicant alex.example@example.org for job"}]}, 0,
        PersonioValidationError, "personio.bad_request", UploadState.REJECTED,
        ["(404)", "No applicant [email] for job"], ["(404)", "No applicant [email] for job"], ["example.org"],
        id="404-keeps-the-detail-without-candidate-data",
    ),
    pytest.param(
        APPLICATIONS_PATH, 400, {"errors": [{"status": "400", "title": "Forbidden", "detail": "feature.recruiting.disabled"}]}, 0,
        PersonioFeatureDisabled, "feature.recruiting.disabled", UploadState.HELD,
        ["waits until the Personio connection works again", "recruiting module"],
        ["wartet, bis die Personio-Verbindung wieder funktioniert", "Recruiting-Modul"], [],
        id="feature-code-with-400-holds-the-connection",
    ),
    pytest.param(
        APPLICATIONS_PATH, 400, {"error": {"code": 0, "message": "Applicant already applied to this position."}}, 0,
        PersonioApplicantExists, "errors.applicant-already-exists", UploadState.ALREADY_IN_PERSONIO,
        ["already applied to this job"], ["bereits auf diese Stelle beworben"], [],
        id="legacy-already-applied-wording-is-a-duplicate",
    ),
]


@pytest.mark.parametrize(("path", "status", "body", "documents", "error_class", "code", "state", "must_en", "must_de", "never"), MISREAD)
def test_personio_answer_is_read_right_end_to_end(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock,
    path: str, status: int, body: dict[str, Any], documents: int, error_class: type[PersonioAPIError], code: str, state: UploadState,
    must_en: list[str], must_de: list[str], never: list[str],
) -> None:
    # given: Personio answers this status and body
    if path == APPLICATIONS_PATH:
        mocked.post(MOCK_BASE + DOCUMENTS_PATH, status=200, json={"uuid": "0f1e2d3c-0000-4000-8000-000000000001", "size": 10, "mimetype": "application/pdf", "original_filename": "cv.pdf", "extension": "pdf"})
    mocked.post(MOCK_BASE + path, status=status, json=body)

    # then: the real client classifies it
    client = PersonioClient(requests.Session(), base_url=MOCK_BASE, credentials=PersonioCredentials(COMPANY, TOKEN), app_id="PERSONIO_SYNC_TEST")
    with pytest.raises(PersonioAPIError) as caught:
        if path == DOCUMENTS_PATH:
            client.upload_document(filename="cv.pdf", content=CV)
        else:
            client.create_application({"first_name": "A", "last_name": "B", "email": "a@b.example", "job_position_id": JOB})
    assert type(caught.value) is error_class
    assert caught.value.reason_code == code
    assert caught.value.retryable is False

    # and the upload ends (or waits) with a true message in both languages
    files = [inline(f"doc{n}.pdf" if n else "cv.pdf", CV + bytes([n]) * (n + 1)) for n in range(documents)]
    upload_id = record(session, intake_policy, clock, documents=files if path == APPLICATIONS_PATH else [inline()])
    result = step(session, session_factory, mocked_deps, upload_id)
    assert result.state == state
    upload = load(session, upload_id)
    if state != UploadState.HELD:
        assert upload.reason_code == code
    else:
        session.refresh(connection)
        assert connection.health == Health.RECRUITING_DISABLED
    assert upload.message_en and upload.message_de
    for text in must_en:
        assert text in upload.message_en, upload.message_en
    for text in must_de:
        assert text in upload.message_de, upload.message_de
    for text in never:
        assert text not in upload.message_en and text not in upload.message_de, (upload.message_en, upload.message_de)


def test_persistent_file_not_exists_is_uploaded_again_once_then_rejected(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock,
) -> None:
    # given: Personio keeps saying it does not know the uploaded file
    mocked.post(MOCK_BASE + DOCUMENTS_PATH, status=200, json={"uuid": "0f1e2d3c-0000-4000-8000-000000000002", "size": 10, "mimetype": "application/pdf", "original_filename": "cv.pdf", "extension": "pdf"})
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=400, json={"errors": [{"field": "files", "errors": [{"reason": "errors.file-validation.file-not-exists"}]}]})
    upload_id = record(session, intake_policy, clock)

    # when: the first step parks for a re-upload, the second gets the same answer
    first = step(session, session_factory, mocked_deps, upload_id)
    assert first.outcome == StepOutcome.PARKED
    after_wait(first, clock)
    second = step(session, session_factory, mocked_deps, upload_id)

    # then: rejected with its own message, not "could not be reached"
    assert second.state == UploadState.REJECTED
    upload = load(session, upload_id)
    assert upload.reason_code == "errors.file-validation.file-not-exists"
    assert "even after they were uploaded again" in upload.message_en  # type: ignore[operator]
    assert "auch nach erneutem Hochladen nicht gefunden" in upload.message_de  # type: ignore[operator]
    assert "could not be reached" not in upload.message_en  # type: ignore[operator]
    uploads_sent = [c for c in mocked.calls if c.request.url.endswith(DOCUMENTS_PATH)]
    assert len(uploads_sent) == 2  # the document was uploaded again exactly once


# ================================================================= answer times (issue 12)


class AnswerTimes:
    """A LatencyTracker that keeps what the step reports."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, float]] = []

    def record(self, company: str, endpoint: str, seconds: float) -> None:
        self.recorded.append((company, endpoint, seconds))

    def observed(self, company: str) -> Any:
        raise AssertionError("the step only reports answer times")

    def means(self, companies: Any) -> Any:
        raise AssertionError("the step only reports answer times")


def test_step_reports_each_answer_time_per_company_and_endpoint(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    answers = AnswerTimes()
    upload_id = record(session, intake_policy, clock)

    result = step(session, session_factory, replace(deps, latency=answers), upload_id)

    assert result.state == UploadState.SUBMITTED
    assert [(company, endpoint) for company, endpoint, _ in answers.recorded] == [(str(COMPANY), "documents"), (str(COMPANY), "applications")]
    assert all(0 < seconds < 5 for _, _, seconds in answers.recorded)


@pytest.mark.parametrize(("failure", "reported"), [(422, 1), (503, 1), (requests.ReadTimeout("read timed out"), 0), (requests.ConnectionError("refused"), 0)])
def test_a_refusal_is_an_answer_time_and_a_transport_failure_is_not(
    session: Session, session_factory: sessionmaker[Session], mocked_deps: SyncDeps, mocked: responses.RequestsMock, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, failure: Exception | int, reported: int,
) -> None:
    if isinstance(failure, int):
        mocked.post(MOCK_BASE + DOCUMENTS_PATH, status=failure, json={"success": False, "error": {"message": "no"}})
    else:
        mocked.post(MOCK_BASE + DOCUMENTS_PATH, body=failure)
    answers = AnswerTimes()
    upload_id = record(session, intake_policy, clock)

    step(session, session_factory, replace(mocked_deps, latency=answers), upload_id)

    assert [endpoint for _, endpoint, _ in answers.recorded] == ["documents"] * reported


def test_a_failing_answer_time_store_does_not_fail_the_upload(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection, intake_policy: IntakePolicy, clock: Clock,
) -> None:
    class Broken(AnswerTimes):
        def record(self, company: str, endpoint: str, seconds: float) -> None:
            raise ConnectionError("redis is down")

    upload_id = record(session, intake_policy, clock)

    assert step(session, session_factory, replace(deps, latency=Broken()), upload_id).state == UploadState.SUBMITTED


def test_a_budget_wait_shorter_than_the_short_wait_is_slept_in_the_step_not_parked(
    session: Session, deps: SyncDeps, clock: Clock, claimed_then_budget_spent: tuple[int, str],
) -> None:
    upload_id, lease = claimed_then_budget_spent
    clock.advance(2.0 - 0.03)  # the first slot frees in 30 ms
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    short = replace(deps, policy=replace(deps.policy, short_budget_wait=0.05), sleep=sleep)
    result = process_upload(session, short, upload_id, lease)

    assert slept and slept[0] == pytest.approx(0.03)
    assert result.state == UploadState.SUBMITTED  # no park: the document, then the application


def test_a_longer_budget_wait_parks_and_asks_to_be_woken_a_moment_early(
    session: Session, deps: SyncDeps, claimed_then_budget_spent: tuple[int, str],
) -> None:
    upload_id, lease = claimed_then_budget_spent
    slept: list[float] = []
    short = replace(deps, policy=replace(deps.policy, short_budget_wait=0.05), sleep=slept.append)

    result = process_upload(session, short, upload_id, lease)

    assert result.outcome == StepOutcome.PARKED and slept == []
    assert result.wake_in == pytest.approx(2.0 - 0.05)  # the step sleeps the last moment
