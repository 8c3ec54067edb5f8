"""services.retention: document bytes go at the outcome, candidate data after the retention period.

Uploads are recorded with ``receive_upload`` and sent through the real upload step against the
in-process Personio stand-in, so the rows the purge works on are the ones production writes.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models import ApplicationClaim, Job, OutboxEvent, Upload, UploadDocument, UploadState
from personio.client import PersonioClient, PersonioCredentials
from ratelimit import CompanyRateLimiter
from sandbox import SandboxServer
from services.context import SyncDeps, UploadPolicy
from services.dispatch import dispatch_connection
from services.events import ListPublisher
from services.processing import process_upload
from services.retention import (
    DIGEST_PREFIX,
    EmailDigests,
    PurgeCounts,
    purge_document_bytes,
    purge_expired_batch,
    retention_due,
    run_retention,
)
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from tests.factories import (
    ACCOUNT,
    COMPANY,
    DOMAIN,
    JOB,
    PROJECT,
    TOKEN,
    make_connection,
    make_link,
    make_upload,
)

if TYPE_CHECKING:
    from tests.conftest import Clock

EMAIL = "Alex.Example@Example.org"
CV = b"%PDF-1.4 curriculum vitae of Alex Example"
RETENTION = timedelta(days=30)
PERSONAL = ("alex", "example.org", "Example", "Berlin", "+49 30 1234567", "Alex_Example_CV")


# ================================================================= fixtures and helpers


@pytest.fixture
def digests(cipher: TokenCipher) -> EmailDigests:
    return EmailDigests.from_cipher(cipher)


@pytest.fixture
def deps(
    upload_policy: UploadPolicy, limiter: CompanyRateLimiter, http: requests.Session, sandbox: SandboxServer,
    cipher: TokenCipher, events: ListPublisher, clock: Clock, digests: EmailDigests,
) -> SyncDeps:
    def client(connection: Any) -> PersonioClient:
        credentials = PersonioCredentials(connection.company_id, cipher.decrypt(connection.access_token_encrypted))
        return PersonioClient(http, base_url=sandbox.url, credentials=credentials, app_id="PERSONIO_SYNC", timeout=(2.0, 5.0))

    def no_fetch(url: str) -> bytes:
        raise AssertionError("no document is fetched by URL here")

    return SyncDeps(
        policy=upload_policy, limiter=limiter, clients=client, events=events, wake=lambda *_: None,
        fetch_document=no_fetch, clock=clock, rng=random.Random(7), email_digests=digests,
    )


@pytest.fixture
def connection_id(session: Session, cipher: TokenCipher, clock: Clock) -> int:
    connection = make_connection(session, cipher, account_id=ACCOUNT, company_id=COMPANY, token=TOKEN, jobs_domain=DOMAIN, at=clock(), commit=False)
    session.add(Job(connection_id=connection.id, job_position_id=JOB, name="Job", published=True, first_seen_at=clock(), updated_at=clock()))
    make_link(session, connection, project_id=PROJECT, job_position_id=JOB, at=clock())
    return connection.id


def record(session: Session, policy: IntakePolicy, clock: Clock, request_id: str, *, email: str = EMAIL, **extra: Any) -> int:
    document = {"category": "cv", "filename": "Alex_Example_CV.pdf", "content_base64": base64.b64encode(CV).decode()}
    candidate: dict[str, Any] = {
        "first_name": "Alex", "last_name": "Example", "email": email, "phone": "+49 30 1234567",
        "location": "Berlin", "documents": [document], **extra,
    }
    upload_id = make_upload(session, policy, clock(), request_id, expect=None, **candidate)
    session.commit()
    return upload_id


def send(session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, upload_id: int) -> Upload:
    """Claim the upload as the dispatcher does and run upload steps until it is finished."""
    for _ in range(5):
        session.commit()
        upload = session.get(Upload, upload_id, populate_existing=True)
        assert upload is not None
        if upload.is_terminal:
            return upload
        assert upload.connection_id is not None
        session.commit()  # SQLite: our transaction would hold the write lock the dispatcher needs
        with session_factory.begin() as dispatcher:
            result = dispatch_connection(dispatcher, upload.connection_id, policy=deps.policy, limiter=deps.limiter, now=deps.clock())
        leases = {claim.upload_id: claim.lease_token for claim in result.claimed}
        process_upload(session, deps, upload_id, leases[upload_id])
    raise AssertionError("the upload did not finish")


def stored_text(session: Session, upload_id: int) -> str:
    """Everything stored about one upload, its documents, history and claims, as one text."""
    upload = session.get(Upload, upload_id, populate_existing=True)
    assert upload is not None
    parts: list[Any] = [upload.candidate, upload.email_normalized, upload.message_en, upload.message_de]
    for document in session.scalars(select(UploadDocument).where(UploadDocument.upload_id == upload_id)):
        parts += [document.filename, document.url, document.content]
    parts += [(event.detail, event.reason_code) for event in upload.events]
    parts += list(session.scalars(select(ApplicationClaim.email_normalized).where(ApplicationClaim.upload_id == upload_id)))
    return json.dumps(parts, default=repr)


@contextmanager
def unit(session_factory: sessionmaker[Session], log: list[str] | None = None) -> Iterator[Session]:
    with session_factory() as session:
        yield session
        session.commit()
        if log is not None:
            log.append("commit")


# ================================================================= document bytes


def test_a_submitted_upload_keeps_no_document_bytes_but_its_hash_and_size(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, intake_policy: IntakePolicy, clock: Clock, connection_id: int
) -> None:
    upload_id = record(session, intake_policy, clock, "req-sent")

    upload = send(session, session_factory, deps, upload_id)

    assert upload.state == UploadState.SUBMITTED
    document = session.scalars(select(UploadDocument).where(UploadDocument.upload_id == upload_id)).one()
    assert document.content is None
    assert document.personio_uuid is not None
    assert document.size == len(CV) and document.sha256 is not None and len(document.sha256) == 64


def test_an_upload_refused_at_intake_keeps_no_document_bytes(session: Session, intake_policy: IntakePolicy, clock: Clock) -> None:
    upload_id = record(session, intake_policy, clock, "req-unconnected")  # no connection: rejected at once

    upload = session.get(Upload, upload_id)
    assert upload is not None and upload.reason_code == "personio-sync.connection-not-found"
    assert session.scalars(select(UploadDocument.content).where(UploadDocument.upload_id == upload_id)).all() == [None]


def test_an_upload_in_flight_keeps_its_bytes_and_the_sweep_leaves_them(session: Session, intake_policy: IntakePolicy, clock: Clock, connection_id: int) -> None:
    upload_id = record(session, intake_policy, clock, "req-queued")

    counts = purge_document_bytes(session)

    assert counts == PurgeCounts()
    assert session.scalars(select(UploadDocument.content).where(UploadDocument.upload_id == upload_id)).all() == [CV]


def test_the_sweep_deletes_bytes_a_finished_upload_still_holds(session: Session, intake_policy: IntakePolicy, clock: Clock) -> None:
    upload_ids = [record(session, intake_policy, clock, f"req-old-{n}") for n in range(3)]
    # As rows written before bytes were deleted at the outcome.
    session.execute(update(UploadDocument).values(content=CV))
    session.commit()

    first = purge_document_bytes(session, batch_size=2)
    second = purge_document_bytes(session, batch_size=2)
    third = purge_document_bytes(session, batch_size=2)

    assert (first.documents, second.documents, third.documents) == (2, 1, 0)
    assert first.document_bytes == 2 * len(CV)
    assert session.scalars(select(UploadDocument.content).where(UploadDocument.upload_id.in_(upload_ids))).all() == [None] * 3


# ================================================================= the retention purge


def test_candidate_data_stays_for_the_retention_period_then_only_ids_hashes_and_outcomes(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, intake_policy: IntakePolicy, clock: Clock,
    connection_id: int, digests: EmailDigests,
) -> None:
    upload_id = record(session, intake_policy, clock, "req-1", message="I am Alex Example from Berlin")
    upload = send(session, session_factory, deps, upload_id)
    finished_at = upload.finished_at
    sha256 = session.scalars(select(UploadDocument.sha256)).one()

    early = purge_expired_batch(session, now=clock() + RETENTION - timedelta(minutes=1), retention=RETENTION, digests=digests)
    session.commit()
    assert early == PurgeCounts()
    assert "Berlin" in stored_text(session, upload_id)

    later = clock() + RETENTION + timedelta(minutes=1)
    counts = purge_expired_batch(session, now=later, retention=RETENTION, digests=digests)
    session.commit()

    assert counts == PurgeCounts(uploads=1, claims=1)
    text = stored_text(session, upload_id)
    for value in PERSONAL:
        assert value.lower() not in text.lower(), value
    upload = session.get(Upload, upload_id, populate_existing=True)
    assert upload is not None
    assert upload.candidate == {}
    assert upload.email_normalized == digests.digest("alex.example@example.org")
    assert (upload.state, upload.reason_code, upload.finished_at, upload.request_id) == (UploadState.SUBMITTED, "personio-sync.submitted", finished_at, "req-1")
    assert upload.purged_at == later
    document = session.scalars(select(UploadDocument)).one()
    assert (document.filename, document.sha256, document.size, document.category) == ("document-1.pdf", sha256, len(CV), "cv")
    assert document.personio_uuid is not None
    claim = session.scalars(select(ApplicationClaim)).one()
    assert claim.email_normalized.startswith(DIGEST_PREFIX)


def test_the_purge_is_idempotent(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, intake_policy: IntakePolicy, clock: Clock,
    connection_id: int, digests: EmailDigests,
) -> None:
    send(session, session_factory, deps, record(session, intake_policy, clock, "req-1"))
    later = clock() + RETENTION * 2

    first = purge_expired_batch(session, now=later, retention=RETENTION, digests=digests)
    session.commit()
    before = stored_text(session, 1)
    second = purge_expired_batch(session, now=later + timedelta(days=1), retention=RETENTION, digests=digests)
    session.commit()

    assert first.uploads == 1 and second == PurgeCounts()
    assert stored_text(session, 1) == before
    assert retention_due(session, now=later, retention=RETENTION) == 0


def test_a_duplicate_is_still_refused_after_the_purge_without_calling_personio(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, intake_policy: IntakePolicy, clock: Clock,
    connection_id: int, digests: EmailDigests, sandbox: SandboxServer,
) -> None:
    send(session, session_factory, deps, record(session, intake_policy, clock, "req-first"))
    clock.advance(RETENTION.total_seconds() + 60)
    purge_expired_batch(session, now=clock(), retention=RETENTION, digests=digests)
    session.commit()
    assert "alex.example@example.org" not in json.dumps(list(session.scalars(select(ApplicationClaim.email_normalized))))
    applications_before = len(sandbox.state.applications())

    again = send(session, session_factory, deps, record(session, intake_policy, clock, "req-again", email="  ALEX.example@example.org "))

    assert (again.state, again.reason_code) == (UploadState.ALREADY_IN_PERSONIO, "personio-sync.already-sent")
    assert len(sandbox.state.applications()) == applications_before


def test_a_digest_made_under_a_rotated_out_key_still_matches_while_that_key_is_listed(cipher: TokenCipher, secret_key: str) -> None:
    old = EmailDigests.from_cipher(cipher)
    rotated = EmailDigests.from_cipher(TokenCipher((Fernet.generate_key().decode(), secret_key)))

    assert old.digest("a@b.de") in rotated.claim_keys("a@b.de")
    assert rotated.digest("a@b.de") != old.digest("a@b.de")
    assert rotated.claim_keys("a@b.de")[0] == "a@b.de"
    assert "a@b.de" not in old.digest("a@b.de")


def test_a_refused_request_is_purged_too(session: Session, intake_policy: IntakePolicy, clock: Clock, digests: EmailDigests) -> None:
    upload_id = make_upload(session, intake_policy, clock(), "req-bad", expect=UploadState.REJECTED, email="not-an-address", first_name="Alex", last_name="Example")
    session.commit()

    counts = purge_expired_batch(session, now=clock() + RETENTION * 2, retention=RETENTION, digests=digests)
    session.commit()

    assert counts.uploads == 1
    assert "not-an-address" not in stored_text(session, upload_id)
    assert "Alex" not in stored_text(session, upload_id)


def test_run_retention_works_in_batches_each_committed_and_reports_counts_only(
    session: Session, session_factory: sessionmaker[Session], intake_policy: IntakePolicy, clock: Clock, digests: EmailDigests
) -> None:
    for n in range(7):
        record(session, intake_policy, clock, f"req-{n}", email=f"person{n}@example.org")
    session.execute(update(UploadDocument).values(content=CV))  # leftover bytes, as before this release
    session.commit()
    commits: list[str] = []
    published: list[dict[str, Any]] = []

    class Recorder(ListPublisher):
        def publish(self, event: Any) -> None:
            super().publish(event)
            published.append(dict(event))

    totals = run_retention(
        lambda: unit(session_factory, commits), now=lambda: clock() + RETENTION * 2, retention=RETENTION,
        digests=digests, events_for=lambda _session: Recorder(), batch_size=3,
    )

    assert totals == PurgeCounts(uploads=7, documents=7, document_bytes=7 * len(CV), claims=0)
    # Bytes: 3 + 3 + 1; uploads: 3 + 3 + 1; then the event.
    assert len(commits) == 7
    assert published == [{"type": "retention.purged", "at": published[0]["at"], "uploads": 7, "documents": 7, "document_bytes": 7 * len(CV), "claims": 0}]
    session.expire_all()
    assert session.scalars(select(Upload.purged_at).where(Upload.purged_at.is_(None))).all() == []
    session.commit()

    again = run_retention(
        lambda: unit(session_factory), now=lambda: clock() + RETENTION * 2, retention=RETENTION,
        digests=digests, events_for=lambda _session: Recorder(), batch_size=3,
    )
    assert again == PurgeCounts() and len(published) == 1  # nothing changed: no second event


def test_the_retention_event_goes_through_the_outbox(session: Session, session_factory: sessionmaker[Session], intake_policy: IntakePolicy, clock: Clock, digests: EmailDigests) -> None:
    from services.events import OutboxPublisher

    record(session, intake_policy, clock, "req-1")
    session.query(OutboxEvent).delete()
    session.commit()

    run_retention(lambda: unit(session_factory), now=lambda: clock() + RETENTION * 2, retention=RETENTION, digests=digests, events_for=OutboxPublisher)

    payloads = [row.payload for row in session.scalars(select(OutboxEvent))]
    assert [p["type"] for p in payloads] == ["retention.purged"]
    assert set(payloads[0]) == {"type", "at", "uploads", "documents", "document_bytes", "claims"}
