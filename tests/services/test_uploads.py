"""services.uploads: recording upload requests, idempotently, with their history."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models import DocumentSource, Priority, Upload, UploadDocument, UploadEvent, UploadState
from services.events import ListPublisher
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from services.uploads import Received, receive_upload, upload_status
from tests.factories import make_connection

pytestmark = pytest.mark.rolled_back

if TYPE_CHECKING:
    from tests.conftest import Clock

CV = b"%PDF-1.4 the candidate's cv"
EMAIL = "Alex.Example@Example.org"


def request(request_id: str = "req-1", account_id: str = "acct-1", **candidate: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": "Alex",
        "last_name": "Example",
        "email": f" {EMAIL} ",
        "documents": [
            {"category": "cv", "filename": "cv.pdf", "content_base64": base64.b64encode(CV).decode()},
            {"category": "other", "filename": "portfolio.zip", "url": "https://files.example.com/p.zip"},
        ],
    }
    body.update(candidate)
    return {"request_id": request_id, "account_id": account_id, "project_id": "proj-1", "candidate": body}


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def recorded(session: Session, received: Received, state: UploadState) -> Upload:
    """The upload ``receive_upload`` just recorded, after checking it was new and is in ``state``."""
    assert received.created is True
    assert received.state == state
    upload = session.get(Upload, received.upload_id)
    assert upload is not None and upload.state == state
    return upload


def test_valid_request_is_recorded_as_queued(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    # given
    connection = make_connection(session, cipher)

    # when
    received = receive_upload(session, request(), policy=intake_policy, events=events, now=clock())

    # then
    upload = recorded(session, received, UploadState.QUEUED)
    assert received.connection_id == connection.id
    assert upload.connection_id == connection.id
    assert upload.email_normalized == EMAIL.lower()
    assert upload.priority == Priority.INTERACTIVE
    assert upload.next_attempt_at == clock()
    assert upload.attempts == 0 and upload.application_attempts == 0
    assert upload.job_position_id is None  # resolved when sent
    assert "documents" not in upload.candidate
    assert upload.candidate["first_name"] == "Alex"
    assert events.events == []  # only terminal outcomes are published


def test_inline_document_bytes_are_stored_with_their_sha256(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock, session_factory: sessionmaker[Session]) -> None:
    make_connection(session, cipher)

    received = receive_upload(session, request(), policy=intake_policy, events=events, now=clock())
    session.commit()  # the caller commits (see services)

    # then: read back through a new session, from the database
    with session_factory() as other:
        inline, by_url = other.scalars(select(UploadDocument).where(UploadDocument.upload_id == received.upload_id).order_by(UploadDocument.position)).all()
        assert (inline.position, inline.category, inline.filename, inline.source) == (0, "cv", "cv.pdf", DocumentSource.INLINE)
        assert inline.content == CV
        assert inline.size == len(CV)
        assert inline.sha256 == hashlib.sha256(CV).hexdigest()
        assert inline.personio_uuid is None
        assert (by_url.position, by_url.source, by_url.url) == (1, DocumentSource.URL, "https://files.example.com/p.zip")
        assert by_url.content is None and by_url.sha256 is None and by_url.size is None


def test_same_request_id_twice_records_one_upload(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    make_connection(session, cipher)
    first = receive_upload(session, request(), policy=intake_policy, events=events, now=clock())
    clock.advance(5)

    again = receive_upload(session, request(first_name="Changed"), policy=intake_policy, events=events, now=clock())

    assert again.created is False
    assert again.upload_id == first.upload_id
    assert again.state == UploadState.QUEUED
    assert count(session, Upload) == 1
    assert count(session, UploadDocument) == 2
    assert session.get(Upload, first.upload_id).candidate["first_name"] == "Alex"  # type: ignore[union-attr]


def test_backfill_priority_is_kept(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    make_connection(session, cipher)

    received = receive_upload(session, {**request(), "priority": "backfill"}, policy=intake_policy, events=events, now=clock())

    assert session.get(Upload, received.upload_id).priority == Priority.BACKFILL  # type: ignore[union-attr]


def test_invalid_request_is_recorded_rejected_with_every_error_and_an_event(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    # given: two mistakes and an inline body that must not be stored
    make_connection(session, cipher)
    payload = request(email="not-an-email", application_date="2999-01-01")

    # when
    received = receive_upload(session, payload, policy=intake_policy, events=events, now=clock())

    # then
    upload = recorded(session, received, UploadState.REJECTED)
    assert upload.reason_code == "personio-sync.invalid-request"
    assert upload.error_field == "candidate.application_date, candidate.email"
    assert "candidate.email: is not a valid email address: it needs exactly one @" in upload.message_en  # type: ignore[operator]
    assert "candidate.application_date: lies in the future" in upload.message_en  # type: ignore[operator]
    assert upload.message_de.startswith("Die Upload-Anfrage ist unvollständig oder ungültig")  # type: ignore[union-attr]
    assert upload.finished_at == clock()
    assert upload.documents == []
    # What was sent is kept for support, without the file body.
    assert upload.candidate["documents"][0]["content_base64"] == f"<{len(base64.b64encode(CV))} base64 characters>"
    assert [e.state for e in upload.events] == ["queued", "rejected"]
    [event] = events.events
    assert event["type"] == "upload.finished"
    assert event["outcome"] == "rejected"
    assert event["reason_code"] == "personio-sync.invalid-request"
    assert event["request_id"] == "req-1"
    assert event["errors"] == [
        "candidate.application_date: lies in the future; Personio only accepts today or an earlier date.",
        "candidate.email: is not a valid email address: it needs exactly one @ between the name and the domain, as in name@example.com.",
    ]


def test_invalid_request_delivered_twice_is_recorded_once(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    payload = request(email="nope")
    first = receive_upload(session, payload, policy=intake_policy, events=events, now=clock())

    again = receive_upload(session, payload, policy=intake_policy, events=events, now=clock())

    assert again.created is False and again.upload_id == first.upload_id
    assert count(session, Upload) == 1
    assert len(events.events) == 1


def test_invalid_request_without_usable_request_id_is_only_published(session: Session, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    payload = request(request_id="not a valid id", email="nope")

    received = receive_upload(session, payload, policy=intake_policy, events=events, now=clock())

    assert received.upload_id is None
    assert received.state == UploadState.REJECTED
    assert count(session, Upload) == 0
    [event] = events.events
    assert event["type"] == "upload.invalid"
    assert event["request_id"] == "not a valid id"
    assert event["reason_code"] == "personio-sync.invalid-request"
    assert any(e.startswith("request_id:") for e in event["errors"])


def test_non_object_payload_is_published_as_invalid(session: Session, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    received = receive_upload(session, ["not", "an", "object"], policy=intake_policy, events=events, now=clock())

    assert received.upload_id is None
    assert events.events[0]["request_id"] is None
    assert events.events[0]["type"] == "upload.invalid"


def test_unknown_account_is_rejected_connection_not_found(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    make_connection(session, cipher, account_id="someone-else")

    received = receive_upload(session, request(account_id="acct-unknown"), policy=intake_policy, events=events, now=clock())

    upload = recorded(session, received, UploadState.REJECTED)
    assert received.connection_id is None
    assert upload.reason_code == "personio-sync.connection-not-found"
    assert upload.error_field == "account_id"
    assert "not connected to Personio" in upload.message_en  # type: ignore[operator]
    assert "nicht mit Personio verbunden" in upload.message_de  # type: ignore[operator]
    [event] = events.events
    assert (event["outcome"], event["reason_code"], event["account_id"]) == ("rejected", "personio-sync.connection-not-found", "acct-unknown")
    # The outcome event carries ids and the outcome, never the candidate.
    assert EMAIL.lower() not in json.dumps(event).lower()
    assert "Alex" not in json.dumps(event)


def test_status_shows_the_history(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    make_connection(session, cipher)
    received = receive_upload(session, request(account_id="acct-missing"), policy=intake_policy, events=events, now=clock())
    assert received.upload_id is not None

    status = upload_status(session, "req-1")

    assert status is not None
    assert status["state"] == "rejected"
    assert status["terminal"] is True
    assert status["next_attempt_at"] is None
    assert status["message"]["en"].startswith("This account is not connected")
    assert status["documents"] == [
        {"filename": "cv.pdf", "category": "cv", "uploaded": False},
        {"filename": "portfolio.zip", "category": "other", "uploaded": False},
    ]
    assert [(h["state"], h["reason_code"]) for h in status["history"]] == [
        ("queued", None),
        ("rejected", "personio-sync.connection-not-found"),
    ]
    assert all(h["at"] == clock().isoformat() for h in status["history"])


def test_status_of_a_queued_upload(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    make_connection(session, cipher)
    receive_upload(session, request(), policy=intake_policy, events=events, now=clock())

    status = upload_status(session, "req-1")

    assert status is not None
    assert (status["state"], status["terminal"], status["message"]) == ("queued", False, None)
    assert status["next_attempt_at"] == clock().isoformat()
    assert [h["state"] for h in status["history"]] == ["queued"]
    assert upload_status(session, "req-unknown") is None


def test_history_rows_are_stored(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    make_connection(session, cipher)
    received = receive_upload(session, request(), policy=intake_policy, events=events, now=clock())

    rows = session.scalars(select(UploadEvent).where(UploadEvent.upload_id == received.upload_id)).all()

    assert [(r.state, r.at) for r in rows] == [("queued", clock())]


def test_a_bug_in_validation_still_records_the_request(session: Session, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock, monkeypatch: Any, caplog: Any) -> None:
    def broken(payload: Any, policy: IntakePolicy) -> Any:
        raise RuntimeError(f"cannot handle {payload['candidate']['first_name']}")

    monkeypatch.setattr("services.uploads.load_upload_request", broken)

    received = receive_upload(session, request(), policy=intake_policy, events=events, now=clock())

    upload = recorded(session, received, UploadState.REJECTED)
    assert upload.reason_code == "personio-sync.invalid-request"
    assert "could not be checked" in upload.message_en  # type: ignore[operator]
    assert [e["type"] for e in events.events] == ["upload.finished"]
    assert "RuntimeError" in caplog.text and "Alex" not in caplog.text  # type and place only


def test_what_is_kept_of_a_refused_candidate_fits_any_database(session: Session, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    deep: Any = "leaf"
    for _ in range(1000):
        deep = [deep]
    payload = request(
        first_name="Al\ud800ex",
        phone=10**5000,
        message="m" * 50_000,
        tags=[float("nan"), float("inf")],
        extra=deep,
        **{"bad\udc00key": "x", "many": list(range(500))},
    )

    received = receive_upload(session, payload, policy=intake_policy, events=events, now=clock())

    upload = recorded(session, received, UploadState.REJECTED)
    kept = upload.candidate
    json.dumps(kept, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert kept["first_name"] == "<not valid text>"
    assert kept["phone"] == "<very large integer>"
    assert kept["message"].startswith("m" * 1000) and kept["message"].endswith("… <50000 characters>")
    assert kept["tags"] == ["<nan>", "<inf>"]
    assert "<nested too deep>" in json.dumps(kept["extra"])
    assert kept["many"][-1] == "<400 more items>"
    assert "<key #9>" in kept  # named like the error names it


@pytest.mark.parametrize(
    ("request_id", "published"),
    [("has space", "has space"), ("bad\ud800", None), ("line\nbreak", None), ("x" * 300, None), (42, None)],
)
def test_upload_invalid_carries_the_request_id_only_when_it_is_safe(request_id: Any, published: str | None, session: Session, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    receive_upload(session, request(request_id=request_id), policy=intake_policy, events=events, now=clock())

    [event] = events.events
    assert event["type"] == "upload.invalid"
    assert event["request_id"] == published


def test_ids_of_a_refused_request_are_kept_only_when_safe(session: Session, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    payload = {**request(email="nope"), "account_id": "acct\ud800", "project_id": {"id": "p"}}

    received = receive_upload(session, payload, policy=intake_policy, events=events, now=clock())

    upload = session.get(Upload, received.upload_id)
    assert upload is not None
    assert (upload.account_id, upload.project_id) == ("", "")
    [event] = events.events
    assert (event["account_id"], event["project_id"]) == ("", "")
    assert event["field"] == "account_id, candidate.email, project_id"


def test_an_unsafe_backfill_id_is_not_stored(session: Session, cipher: TokenCipher, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    make_connection(session, cipher)

    received = receive_upload(session, request(), policy=intake_policy, events=events, now=clock(), backfill_id="bf\ud800")

    assert session.get(Upload, received.upload_id).backfill_id is None  # type: ignore[union-attr]


@pytest.mark.parametrize("backfill", [[], "x", 7, None, {"backfill_id": 12, "candidates": "not a list"}, {"candidates": {"a": 1}}])
def test_a_malformed_backfill_is_refused_with_an_event_not_a_crash(session: Session, intake_policy: IntakePolicy, backfill: Any) -> None:
    from services.backfill import record_backfill

    events = ListPublisher()
    assert record_backfill(session, backfill, policy=intake_policy, events=events, now=datetime.now(UTC)) == set()
    assert [e["type"] for e in events.events] == ["upload.invalid"]
