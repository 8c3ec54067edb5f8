"""services.retention and services.forget: document bytes go at the outcome, candidate data after
the retention period, and one person's data everywhere on request.

Uploads are recorded with ``receive_upload`` and sent through the real upload step against the
in-process Personio stand-in, so the rows the purge and ``forget`` work on are the ones production
writes; Redis messages are the ones Celery itself puts on a queue (a real server), and the holding,
unacked and dead-letter entries have the shapes ``worker.transport`` and kombu store.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import redis
import requests
from celery import Celery
from cryptography.fernet import Fernet
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models import ApplicationClaim, Job, OutboxEvent, Upload, UploadDocument, UploadState
from personio.client import PersonioClient, PersonioCredentials
from ratelimit import CompanyRateLimiter
from sandbox import SandboxServer
from services.context import SyncDeps, UploadPolicy
from services.dispatch import dispatch_connection
from services.events import ListPublisher, OutboxPublisher
from services.forget import (
    FORGOTTEN,
    StoppedRequest,
    email_pattern,
    forget_in_database,
    forget_in_redis,
)
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
from worker.transport import dead_letter_record

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
    record(session, intake_policy, clock, "req-1")
    session.query(OutboxEvent).delete()
    session.commit()

    run_retention(lambda: unit(session_factory), now=lambda: clock() + RETENTION * 2, retention=RETENTION, digests=digests, events_for=OutboxPublisher)

    payloads = [row.payload for row in session.scalars(select(OutboxEvent))]
    assert [p["type"] for p in payloads] == ["retention.purged"]
    assert set(payloads[0]) == {"type", "at", "uploads", "documents", "document_bytes", "claims"}


# ================================================================= forget


NORMALIZED = "alex.example@example.org"
PERSONAL = ("alex", "example.org", "Berlin", "+49 30 1234567", "Alex_Example_CV")


def all_text(session: Session, upload_ids: list[int]) -> str:
    return " ".join(stored_text(session, upload_id) for upload_id in upload_ids)


# ================================================================= database


def test_forget_erases_every_upload_of_the_person_and_stops_the_one_in_flight(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, intake_policy: IntakePolicy, clock: Clock,
    connection_id: int, digests: EmailDigests,
) -> None:
    sent = record(session, intake_policy, clock, "req-sent", message="Alex from Berlin")
    send(session, session_factory, deps, sent)
    queued = record(session, intake_policy, clock, "req-queued", email="ALEX.example@example.org")
    refused = make_upload(session, intake_policy, clock(), "req-refused", expect=UploadState.REJECTED, email=EMAIL, first_name=123)
    other = record(session, intake_policy, clock, "req-other", email="sam@example.net", first_name="Sam", last_name="Other")
    # An event still waiting in the outbox that quotes the person (Personio's explanation, say).
    OutboxPublisher(session).publish({"type": "upload.finished", "request_id": "req-sent", "message_en": f"Personio said: {NORMALIZED} is taken"})
    session.commit()
    events = ListPublisher()

    report = forget_in_database(session, "  Alex.Example@EXAMPLE.org ", now=clock(), events=events, digests=digests)
    session.commit()

    assert report.uploads == 3
    assert report.uploads_stopped == 1
    assert report.documents_deleted == 2  # the refused request recorded no documents
    assert report.document_bytes_deleted == len(CV)  # only the queued upload still held its bytes
    assert report.claims_deleted == 1
    assert report.outbox_events_redacted == 1
    text = all_text(session, [sent, queued, refused])
    for value in PERSONAL:
        assert value.lower() not in text.lower(), value
    stopped = session.get(Upload, queued, populate_existing=True)
    assert stopped is not None
    assert (stopped.state, stopped.reason_code, stopped.email_normalized, stopped.candidate) == (UploadState.REJECTED, FORGOTTEN, None, {})
    assert stopped.message_de is not None and "auf Anfrage gelöscht" in stopped.message_de
    assert [(e["request_id"], e["reason_code"]) for e in events.events] == [("req-queued", FORGOTTEN)]
    assert session.scalars(select(UploadDocument).where(UploadDocument.upload_id.in_([sent, queued]))).all() == []
    assert session.scalars(select(ApplicationClaim)).all() == []
    outbox = [row.payload for row in session.scalars(select(OutboxEvent))]
    assert NORMALIZED not in json.dumps(outbox)
    # The upload's ids and outcome stay; someone else's upload is untouched.
    sent_upload = session.get(Upload, sent)
    assert sent_upload is not None and (sent_upload.state, sent_upload.request_id) == (UploadState.SUBMITTED, "req-sent")
    assert "Sam" in stored_text(session, other) and session.scalars(select(UploadDocument.content).where(UploadDocument.upload_id == other)).one() == CV


def test_forget_finds_an_upload_the_retention_purge_already_reduced(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, intake_policy: IntakePolicy, clock: Clock,
    connection_id: int, digests: EmailDigests,
) -> None:
    upload_id = record(session, intake_policy, clock, "req-old")
    send(session, session_factory, deps, upload_id)
    purge_expired_batch(session, now=clock() + timedelta(days=31), retention=timedelta(days=30), digests=digests)
    session.commit()

    report = forget_in_database(session, EMAIL, now=clock(), events=ListPublisher(), digests=digests)
    session.commit()

    assert (report.uploads, report.claims_deleted, report.documents_deleted) == (1, 1, 1)
    upload = session.get(Upload, upload_id, populate_existing=True)
    assert upload is not None and upload.email_normalized is None  # not even the digest stays


def test_forget_records_a_request_taken_off_a_queue_as_forgotten(session: Session, clock: Clock, digests: EmailDigests) -> None:
    events = ListPublisher()

    report = forget_in_database(
        session, EMAIL, now=clock(), events=events, digests=digests,
        stopped_requests=[StoppedRequest("req-from-queue", "acct-1", "proj-1")],
    )
    again = forget_in_database(
        session, EMAIL, now=clock(), events=events, digests=digests,
        stopped_requests=[StoppedRequest("req-from-queue", "acct-1", "proj-1")],
    )
    session.commit()

    assert report.requests_recorded == 1 and again.requests_recorded == 0
    upload = session.scalars(select(Upload).where(Upload.request_id == "req-from-queue")).one()
    assert (upload.state, upload.reason_code, upload.candidate) == (UploadState.REJECTED, FORGOTTEN, {})
    assert [e["reason_code"] for e in events.events] == [FORGOTTEN]


def test_the_address_matches_as_a_whole_word_only() -> None:
    pattern = email_pattern(NORMALIZED)

    assert pattern.search(f"mail {NORMALIZED.upper()}.")
    assert not pattern.search(f"x{NORMALIZED}")
    assert not pattern.search(f"{NORMALIZED}x")
    assert not pattern.search(f"{NORMALIZED}.uk")


# ================================================================= Redis


@pytest.fixture
def keys(real_redis_url: str) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    names = {name: f"test-forget-{name}-{suffix}" for name in ("queue", "holding", "holding_index", "unacked", "unacked_index", "dead", "events")}
    yield names
    client = redis.Redis.from_url(real_redis_url)
    client.delete(*names.values(), *(f"{names['queue']}\x06\x16{p}" for p in (3, 6, 9)))
    client.close()


def queued_messages(real_redis_url: str, queue: str, sent: list[tuple[str, dict[str, Any], int]]) -> list[str]:
    """Send tasks as Celery does onto ``queue``; returns the raw messages as stored."""
    app = Celery("forget-test", broker=real_redis_url.replace("unix://", "redis+socket://"), set_as_current=False)
    app.conf.update(task_serializer="json")
    with app.connection_for_write() as connection:
        for task, argument, priority in sent:
            app.send_task(task, args=[argument], queue=queue, connection=connection, priority=priority)
        client = connection.default_channel.client
        raws = [raw.decode() for key in (queue, f"{queue}\x06\x169") for raw in client.lrange(key, 0, -1)]
    return raws


def body_of(raw: str) -> Any:
    return json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]


def request(request_id: str, email: str, name: str = "Alex") -> dict[str, Any]:
    return {"request_id": request_id, "account_id": "acct-1", "project_id": "proj-1",
            "candidate": {"first_name": name, "last_name": "Example", "email": email}}


def test_forget_clears_queues_held_and_unacked_messages_dead_letters_and_the_stream(real_redis_url: str, keys: dict[str, str]) -> None:
    client = redis.Redis.from_url(real_redis_url, decode_responses=True)
    backfill = {"backfill_id": "bf-1", "account_id": "acct-1", "project_id": "proj-1",
                "candidates": [request("bf-1:a", "sam@example.net", "Sam")["candidate"], {"request_id": "bf-1:b", "candidate": request("x", EMAIL)["candidate"]}]}
    raws = queued_messages(real_redis_url, keys["queue"], [
        ("personio_sync.upload_candidate", request("req-alex", EMAIL), 0),
        ("personio_sync.upload_candidate", request("req-sam", "sam@example.net", "Sam"), 0),
        ("personio_sync.upload_candidate", request("req-alex-urgent", NORMALIZED.upper()), 9),
        ("personio_sync.start_backfill", backfill, 0),
    ])
    alex_raw = next(raw for raw in raws if body_of(raw).get("request_id") == "req-alex")
    sam_raw = next(raw for raw in raws if body_of(raw).get("request_id") == "req-sam")
    # Popped and held (worker.transport), and with a worker (kombu's unacked hash).
    client.hset(keys["holding"], mapping={"h1:item": alex_raw, "h1:queue": keys["queue"], "h2:item": sam_raw, "h2:queue": keys["queue"]})
    client.zadd(keys["holding_index"], {"h1": time.time(), "h2": time.time()})
    client.hset(keys["unacked"], mapping={"tag-1": json.dumps([json.loads(alex_raw), "", keys["queue"]]), "tag-2": json.dumps([json.loads(sam_raw), "", keys["queue"]])})
    client.zadd(keys["unacked_index"], {"tag-1": time.time(), "tag-2": time.time()})
    # Dead letters: the person's message (base64 inside the record) and someone else's.
    client.lpush(keys["dead"], json.dumps(dead_letter_record(alex_raw.encode(), queue=keys["queue"], reason="test")))
    client.lpush(keys["dead"], json.dumps(dead_letter_record(sam_raw.encode(), queue=keys["queue"], reason="test")))
    client.xadd(keys["events"], {"type": "upload.finished", "message_en": f"Personio said: {NORMALIZED} exists"})
    client.xadd(keys["events"], {"type": "upload.finished", "message_en": "in Personio"})

    report = forget_in_redis(
        client, EMAIL, queues=(keys["queue"],), holding_key=keys["holding"], holding_index_key=keys["holding_index"],
        unacked_key=keys["unacked"], unacked_index_key=keys["unacked_index"], dead_letters_key=keys["dead"], events_stream=keys["events"],
    )

    assert report.counts() == {
        "queued_messages_removed": 2, "queued_messages_rewritten": 1, "held_messages": 1, "unacked_messages": 1,
        "dead_letters_removed": 1, "stream_events_removed": 1,
    }
    assert sorted(r.request_id for r in report.stopped_requests) == ["req-alex", "req-alex", "req-alex", "req-alex-urgent"]
    left = [*client.lrange(keys["queue"], 0, -1), *client.lrange(f"{keys['queue']}\x06\x169", 0, -1)]
    bodies = [body_of(raw) for raw in left]
    assert sorted(b.get("request_id") or b.get("backfill_id") for b in bodies) == ["bf-1", "req-sam"]
    rewritten = next(b for b in bodies if b.get("backfill_id") == "bf-1")
    assert rewritten["candidates"] == [backfill["candidates"][0], {"request_id": "bf-1:b", "candidate": {}}]
    assert client.hkeys(keys["holding"]) == ["h2:item", "h2:queue"] or sorted(client.hkeys(keys["holding"])) == ["h2:item", "h2:queue"]
    assert client.zrange(keys["holding_index"], 0, -1) == ["h2"]
    assert client.hkeys(keys["unacked"]) == ["tag-2"] and client.zrange(keys["unacked_index"], 0, -1) == ["tag-2"]
    assert client.llen(keys["dead"]) == 1 and client.xlen(keys["events"]) == 1
    everything = json.dumps([left, client.hgetall(keys["holding"]), client.hgetall(keys["unacked"]), client.lrange(keys["dead"], 0, -1)])
    decoded = everything + json.dumps(bodies)
    assert NORMALIZED not in decoded.lower()

    again = forget_in_redis(
        client, EMAIL, queues=(keys["queue"],), holding_key=keys["holding"], holding_index_key=keys["holding_index"],
        unacked_key=keys["unacked"], unacked_index_key=keys["unacked_index"], dead_letters_key=keys["dead"], events_stream=keys["events"],
    )
    assert set(again.counts().values()) == {0}
    client.close()


def test_redaction_replaces_the_persons_values_as_whole_words_and_leaves_labels_alone(session: Session, intake_policy: IntakePolicy, clock: Clock) -> None:
    from services.retention import personal_values, redact

    upload_id = record(session, intake_policy, clock, "req-1", tags=["personio"], first_name="Al")
    upload = session.get(Upload, upload_id)
    assert upload is not None

    values = personal_values(upload)

    assert "personio" not in values and "Alex_Example_CV.pdf" in values
    said = "Personio's explanation: “Al Example (alex.example@example.org) sent Alex_Example_CV.pdf from Berlin; Alma too.”"
    assert redact(said, values) == "Personio's explanation: “… … (…) sent … from …; Alma too.”"


def test_a_purged_upload_is_never_redriven(session: Session, intake_policy: IntakePolicy, clock: Clock, digests: EmailDigests) -> None:
    from services.backfill import RedriveFilter, redrive_uploads

    kept = record(session, intake_policy, clock, "req-kept", documents=[])  # no connection: rejected at once
    purged = record(session, intake_policy, clock, "req-purged", documents=[])
    session.execute(update(Upload).where(Upload.id == kept).values(finished_at=clock() + RETENTION * 2))  # not yet due
    purge_expired_batch(session, now=clock() + RETENTION + timedelta(days=1), retention=RETENTION, digests=digests)
    session.commit()

    _, queued, _ = redrive_uploads(session, RedriveFilter(ACCOUNT, UploadState.REJECTED), now=clock())

    assert queued == 1
    states = dict(session.execute(select(Upload.id, Upload.state)).tuples().all())
    assert (states[kept], states[purged]) == (UploadState.QUEUED, UploadState.REJECTED)


def test_forget_removes_a_message_that_is_not_utf8_byte_for_byte(real_redis_url: str, keys: dict[str, str]) -> None:
    client = redis.Redis.from_url(real_redis_url)  # no decoding, as the CLI uses it
    mentioning, other = b"\xff\xfe not JSON " + NORMALIZED.encode(), b"\xff\xfe not JSON either"
    client.rpush(keys["queue"], mentioning, other)
    client.lpush(keys["dead"], json.dumps(dead_letter_record(mentioning, queue=keys["queue"], reason="not JSON")))

    report = forget_in_redis(client, EMAIL, queues=(keys["queue"],), holding_key=keys["holding"], holding_index_key=keys["holding_index"],
                             unacked_key=keys["unacked"], unacked_index_key=keys["unacked_index"], dead_letters_key=keys["dead"], events_stream=keys["events"])

    assert (report.queued_messages_removed, report.dead_letters_removed) == (1, 1)
    assert client.lrange(keys["queue"], 0, -1) == [other]
    client.close()
