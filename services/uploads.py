"""Recording upload requests and reading their status.

``receive_upload`` is idempotent by the main app's ``request_id``: a message delivered
twice records one upload. Invalid requests are recorded too (state ``rejected`` with
every problem listed), so nothing the main app sent disappears silently.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import (
    Connection,
    DocumentSource,
    Health,
    Priority,
    Upload,
    UploadDocument,
    UploadEvent,
    UploadState,
)
from services.events import EventPublisher
from services.messages import moment, render_both
from services.schemas import (
    IntakePolicy,
    UploadRequestInvalid,
    load_upload_request,
    printable_id,
    text_problem,
    unchecked_request,
    usable_request_id,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    upload_id: int | None
    connection_id: int | None
    state: UploadState
    created: bool


def due_uploads(connection_id: int, priority: Priority, now: datetime) -> Select[tuple[int]]:
    """The ids of a connection's queued uploads of one priority that are due, oldest due first.

    Served by the dispatch index (state, connection, priority, next attempt, id): callers add a
    limit, so a dispatch never sorts the backlog.
    """
    return (
        select(Upload.id)
        .where(
            Upload.state == UploadState.QUEUED,
            Upload.connection_id == connection_id,
            Upload.priority == priority,
            Upload.next_attempt_at <= now,
        )
        .order_by(Upload.next_attempt_at, Upload.id)
    )


def normalise_email(email: str) -> str:
    return email.strip().lower()


def transition(upload: Upload, state: UploadState, now: datetime, *, reason_code: str | None = None, detail: str | None = None) -> None:
    """Change an upload's state and append the change to its history."""
    upload.state = state
    upload.updated_at = now
    upload.events.append(UploadEvent(state=state.value, reason_code=reason_code, detail=detail, at=now))


def finish(
    upload: Upload,
    state: UploadState,
    now: datetime,
    *,
    reason_code: str,
    field: str | None = None,
    status: int | None = None,
    **message_params: Any,
) -> None:
    """Move an upload to a terminal state with its recruiter messages."""
    params = {"job_position_id": upload.job_position_id, "field": field, "status": status, **message_params}
    messages = render_both(reason_code, **params)
    upload.reason_code = reason_code
    upload.error_field = field
    upload.personio_status = status
    upload.message_en = messages["en"]
    upload.message_de = messages["de"]
    upload.finished_at = now
    upload.lease_token = None
    upload.lease_until = None
    # Personio has the documents now, or never gets them: their bytes are not kept. (Not
    # earlier: an uploaded file Personio drops before the application is posted is sent again.)
    for document in upload.documents:
        document.content = None
    transition(upload, state, now, reason_code=reason_code, detail=field)


def outcome_event(upload: Upload) -> dict[str, Any]:
    """The event published when an upload ends (no candidate data: ids and outcome only)."""
    return {
        "type": "upload.finished",
        "request_id": upload.request_id,
        "account_id": upload.account_id,
        "project_id": upload.project_id,
        "outcome": upload.state.value,
        "reason_code": upload.reason_code,
        "field": upload.error_field,
        "job_position_id": upload.job_position_id,
        "message_en": upload.message_en,
        "message_de": upload.message_de,
        "at": (upload.finished_at or upload.updated_at).isoformat(),
    }


def receive_upload(
    session: Session, payload: Any, *, policy: IntakePolicy, events: EventPublisher, now: datetime, backfill_id: str | None = None
) -> Received:
    """Validate and record one upload request; publish its outcome if it ends here.

    Never raises because of what the main app sent: every payload ends as a recorded upload
    with a state or, without a usable ``request_id``, as an ``upload.invalid`` event.
    """
    try:
        request = load_upload_request(payload, policy)
    except UploadRequestInvalid as invalid:
        return _record_invalid(session, payload, invalid, events=events, now=now, backfill_id=backfill_id)
    except Exception as exc:  # a bug in validation must not lose the request
        return _record_invalid(session, payload, _unexpected(payload, exc), events=events, now=now, backfill_id=backfill_id)

    existing = session.scalar(select(Upload).where(Upload.request_id == request["request_id"]))
    if existing is not None:
        log.info("upload %s already recorded (duplicate delivery); nothing to do", existing.request_id)
        return Received(existing.id, existing.connection_id, existing.state, created=False)

    connection = session.scalar(select(Connection).where(Connection.account_id == request["account_id"]))
    upload = new_upload(request, connection, now=now, backfill_id=backfill_id)
    try:
        with session.begin_nested():  # a SAVEPOINT settles the request_id race; the caller commits (see services)
            session.add(upload)
            if upload.is_terminal:
                events.publish(outcome_event(upload))  # commits with the upload (outbox)
    except IntegrityError:
        # Another worker recorded the same request_id between our check and insert: only our insert is undone.
        winner = session.scalars(select(Upload).where(Upload.request_id == request["request_id"])).one()
        return Received(winner.id, winner.connection_id, winner.state, created=False)
    log.info("upload %s recorded as %s", upload.request_id, upload.state.value)
    return Received(upload.id, upload.connection_id, upload.state, created=True)


def new_upload(request: dict[str, Any], connection: Connection | None, *, now: datetime, backfill_id: str | None = None) -> Upload:
    """The upload row (with documents and first history entry) for a validated request; not added yet.

    Without a connection it is already ``rejected`` (connection-not-found): the caller publishes
    its outcome event when it adds it.
    """
    candidate = dict(request["candidate"])
    documents = candidate.pop("documents")
    upload = Upload(
        request_id=request["request_id"],
        account_id=request["account_id"],
        project_id=request["project_id"],
        connection_id=connection.id if connection else None,
        email_normalized=normalise_email(candidate["email"]),
        candidate=candidate,
        priority=Priority(request["priority"]),
        phase=request["phase"],
        external_posting_id=request["external_posting_id"],
        backfill_id=printable_id(backfill_id, 64),
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    for position, document in enumerate(documents):
        content = document.get("content")
        upload.documents.append(
            UploadDocument(
                position=position,
                category=document["category"],
                filename=document["filename"],
                source=DocumentSource.INLINE if content is not None else DocumentSource.URL,
                url=document.get("url"),
                content=content,
                size=len(content) if content is not None else None,
                sha256=hashlib.sha256(content).hexdigest() if content is not None else None,
            )
        )
    transition(upload, UploadState.QUEUED, now)
    if connection is None:
        finish(upload, UploadState.REJECTED, now, reason_code="personio-sync.connection-not-found", field="account_id")
    return upload


def _unexpected(payload: Any, exc: Exception) -> UploadRequestInvalid:
    """A validation bug, turned into a refusal so the request still gets a status."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame is not None else "?"
    # Type and place only: the exception's text may quote the payload.
    log.error("validating an upload request failed unexpectedly (%s at %s); recorded as invalid", type(exc).__name__, where)
    request_id = usable_request_id(payload.get("request_id")) if isinstance(payload, dict) else None
    return unchecked_request(request_id)


def _record_invalid(
    session: Session, payload: Any, invalid: UploadRequestInvalid, *, events: EventPublisher, now: datetime, backfill_id: str | None = None
) -> Received:
    # The error lines never quote submitted values and name fields only by safe names (see
    # services.schemas), so they may go to logs and events. Ids are kept only when they are
    # safe to store and publish as they are.
    details = invalid.details  # per language: the German message lists the German sentences
    field_names = ", ".join(invalid.fields)
    raw = payload if isinstance(payload, dict) else {}
    log.warning("upload request %s refused: invalid fields %s", invalid.request_id or "(no valid request_id)", field_names[:1000])
    if invalid.request_id is None:
        events.publish(
            {
                "type": "upload.invalid",
                "request_id": printable_id(raw.get("request_id"), 256),
                "outcome": UploadState.REJECTED.value,
                "reason_code": "personio-sync.invalid-request",
                "errors": invalid.errors,
                "at": now.isoformat(),
            }
        )
        session.flush()  # the event is the only record of this request; the caller commits it
        return Received(None, None, UploadState.REJECTED, created=False)
    existing = session.scalar(select(Upload).where(Upload.request_id == invalid.request_id))
    if existing is not None:
        return Received(existing.id, existing.connection_id, existing.state, created=False)
    upload = Upload(
        request_id=invalid.request_id,
        account_id=printable_id(raw.get("account_id")) or "",
        project_id=printable_id(raw.get("project_id")) or "",
        candidate=_storable_candidate(raw.get("candidate")),
        priority=Priority.BACKFILL if raw.get("priority") == "backfill" else Priority.INTERACTIVE,
        backfill_id=printable_id(backfill_id, 64),
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    transition(upload, UploadState.QUEUED, now)
    finish(upload, UploadState.REJECTED, now, reason_code="personio-sync.invalid-request", field=field_names[:128], details=details)
    try:
        with session.begin_nested():  # a SAVEPOINT settles the request_id race (see services)
            session.add(upload)
            events.publish({**outcome_event(upload), "errors": invalid.errors})  # commits with the upload (outbox)
    except IntegrityError:
        winner = session.scalars(select(Upload).where(Upload.request_id == invalid.request_id)).one()
        return Received(winner.id, winner.connection_id, winner.state, created=False)
    return Received(upload.id, None, upload.state, created=True)


# What is kept of a refused candidate (for support; never published): bounded in depth,
# breadth and string length, and only what JSON columns and PostgreSQL can hold.
_KEEP_DEPTH = 6
_KEEP_ITEMS = 100
_KEEP_CHARS = 1000


def _storable_candidate(candidate: Any) -> dict[str, Any]:
    """Keep what was sent, minus inline file bodies and anything a JSON column cannot hold."""
    if not isinstance(candidate, dict):
        return {"_invalid": repr(type(candidate).__name__)}
    kept = _storable(candidate, 0)
    return kept if isinstance(kept, dict) else {"_invalid": "dict"}


def _storable(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if text_problem(value) is not None:
            return "<not valid text>"
        return value if len(value) <= _KEEP_CHARS else value[:_KEEP_CHARS] + f"… <{len(value)} characters>"
    if isinstance(value, int):
        # json.dumps refuses ints of more than 4300 digits; the database wants sane numbers.
        return value if value.bit_length() <= 63 else "<very large integer>"
    if isinstance(value, float):
        return value if math.isfinite(value) else f"<{value}>"
    if depth >= _KEEP_DEPTH:
        return "<nested too deep>"
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for position, (key, item) in enumerate(value.items(), 1):
            if position > _KEEP_ITEMS:
                kept["<more>"] = f"{len(value) - _KEEP_ITEMS} more fields"
                break
            if not isinstance(key, str) or text_problem(key) is not None or len(key) > 128:
                key = f"<key #{position}>"
            if key == "content_base64" and isinstance(item, str):
                kept[key] = f"<{len(item)} base64 characters>"
            else:
                kept[key] = _storable(item, depth + 1)
        return kept
    if isinstance(value, (list, tuple)):
        items = [_storable(item, depth + 1) for item in value[:_KEEP_ITEMS]]
        if len(value) > _KEEP_ITEMS:
            items.append(f"<{len(value) - _KEEP_ITEMS} more items>")
        return items
    return f"<{type(value).__name__}>"


def upload_status(session: Session, request_id: str) -> dict[str, Any] | None:
    """Everything the main app may show about one upload, history included."""
    upload = session.scalar(select(Upload).where(Upload.request_id == request_id))
    if upload is None:
        return None
    reason_code = upload.reason_code
    message: dict[str, str] | None = {"en": upload.message_en, "de": upload.message_de or ""} if upload.message_en else None
    if upload.state in (UploadState.QUEUED, UploadState.SENDING) and upload.connection_id is not None:
        waiting = rate_limit_wait(session, session.get(Connection, upload.connection_id))
        if waiting is not None:
            reason_code, message = waiting
    return {
        "request_id": upload.request_id,
        "account_id": upload.account_id,
        "project_id": upload.project_id,
        "state": upload.state.value,
        "terminal": upload.is_terminal,
        "priority": upload.priority.value,
        "job_position_id": upload.job_position_id,
        "attempts": upload.attempts,
        "application_attempts": upload.application_attempts,
        "next_attempt_at": None if upload.is_terminal else upload.next_attempt_at.isoformat(),
        "reason_code": reason_code,
        "field": upload.error_field,
        "personio_status": upload.personio_status,
        "message": message,
        "channel_dropped": upload.channel_dropped,
        "confirmed_by_duplicate": upload.confirmed_by_duplicate,
        "documents": [
            {"filename": d.filename, "category": d.category, "uploaded": d.personio_uuid is not None} for d in upload.documents
        ],
        "created_at": upload.created_at.isoformat(),
        "updated_at": upload.updated_at.isoformat(),
        "finished_at": upload.finished_at.isoformat() if upload.finished_at else None,
        "history": [
            {"state": e.state, "reason_code": e.reason_code, "detail": e.detail, "at": e.at.isoformat()} for e in upload.events
        ],
    }


def rate_limit_wait(session: Session, connection: Connection | None) -> tuple[str, dict[str, str]] | None:
    """(reason code, messages) of a waiting upload while its company's 429s are sustained.

    Worked out when asked, not stored: it is true exactly as long as a connection's health
    says so, and every waiting upload of the company says it, also those not yet tried. The
    limit is the Personio company's, so another account connected to the same company counts.
    """
    if connection is None:
        return None
    if connection.health != Health.RATE_LIMITED_SUSTAINED:
        connection = session.scalar(
            select(Connection).where(Connection.company_id == connection.company_id, Connection.health == Health.RATE_LIMITED_SUSTAINED).limit(1)
        )
        if connection is None:
            return None
    since = connection.rate_limited_since or connection.health_changed_at or connection.updated_at
    return "personio.rate_limited_sustained", render_both("personio-sync.waiting-rate-limit", since=moment(since))
