"""Recording upload requests and reading their status.

``receive_upload`` is idempotent by the main app's ``request_id``: a message delivered
twice records one upload. Invalid requests are recorded too (state ``rejected`` with
every problem listed), so nothing the main app sent disappears silently.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import (
    Connection,
    DocumentSource,
    Priority,
    Upload,
    UploadDocument,
    UploadEvent,
    UploadState,
)
from services.events import EventPublisher
from services.messages import render_both
from services.schemas import IntakePolicy, UploadRequestInvalid, load_upload_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    upload_id: int | None
    connection_id: int | None
    state: UploadState
    created: bool


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
    params = {"job_position_id": upload.job_position_id, "field": field, **message_params}
    messages = render_both(reason_code, **params)
    upload.reason_code = reason_code
    upload.error_field = field
    upload.personio_status = status
    upload.message_en = messages["en"]
    upload.message_de = messages["de"]
    upload.finished_at = now
    upload.lease_token = None
    upload.lease_until = None
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
    """Validate and record one upload request; publish its outcome if it ends here."""
    try:
        request = load_upload_request(payload, policy)
    except UploadRequestInvalid as invalid:
        return _record_invalid(session, payload, invalid, events=events, now=now)

    existing = session.scalar(select(Upload).where(Upload.request_id == request["request_id"]))
    if existing is not None:
        log.info("upload %s already recorded (duplicate delivery); nothing to do", existing.request_id)
        return Received(existing.id, existing.connection_id, existing.state, created=False)

    candidate = dict(request["candidate"])
    documents = candidate.pop("documents")
    connection = session.scalar(select(Connection).where(Connection.account_id == request["account_id"]))
    upload = Upload(
        request_id=request["request_id"],
        account_id=request["account_id"],
        project_id=request["project_id"],
        connection_id=connection.id if connection else None,
        email_normalized=normalise_email(candidate["email"]),
        candidate=candidate,
        priority=Priority(request["priority"]),
        backfill_id=backfill_id,
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
    session.add(upload)
    if upload.is_terminal:
        events.publish(outcome_event(upload))  # commits with the upload (outbox)
    try:
        session.commit()
    except IntegrityError:
        # Another worker recorded the same request_id between our check and insert.
        session.rollback()
        winner = session.scalars(select(Upload).where(Upload.request_id == request["request_id"])).one()
        return Received(winner.id, winner.connection_id, winner.state, created=False)
    log.info("upload %s recorded as %s", upload.request_id, upload.state.value)
    return Received(upload.id, upload.connection_id, upload.state, created=True)


def _record_invalid(session: Session, payload: Any, invalid: UploadRequestInvalid, *, events: EventPublisher, now: datetime) -> Received:
    details = " ".join(invalid.errors)
    field_names = ", ".join(line.split(":", 1)[0] for line in invalid.errors)
    # Field names only: the messages may quote candidate data, which must not reach logs.
    log.warning("upload request %s refused: invalid fields %s", invalid.request_id or "(no valid request_id)", field_names)
    if invalid.request_id is None:
        events.publish(
            {
                "type": "upload.invalid",
                "request_id": payload.get("request_id") if isinstance(payload, dict) and isinstance(payload.get("request_id"), str) else None,
                "outcome": UploadState.REJECTED.value,
                "reason_code": "personio-sync.invalid-request",
                "errors": invalid.errors,
                "at": now.isoformat(),
            }
        )
        session.commit()  # the event is the only record of this request
        return Received(None, None, UploadState.REJECTED, created=False)
    existing = session.scalar(select(Upload).where(Upload.request_id == invalid.request_id))
    if existing is not None:
        return Received(existing.id, existing.connection_id, existing.state, created=False)
    raw = payload if isinstance(payload, dict) else {}
    upload = Upload(
        request_id=invalid.request_id,
        account_id=str(raw.get("account_id") or "")[:128],
        project_id=str(raw.get("project_id") or "")[:128],
        candidate=_without_document_bodies(raw.get("candidate")),
        priority=Priority.BACKFILL if raw.get("priority") == "backfill" else Priority.INTERACTIVE,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    transition(upload, UploadState.QUEUED, now)
    finish(upload, UploadState.REJECTED, now, reason_code="personio-sync.invalid-request", field=field_names[:128], details=details)
    session.add(upload)
    events.publish({**outcome_event(upload), "errors": invalid.errors})  # commits with the upload (outbox)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        winner = session.scalars(select(Upload).where(Upload.request_id == invalid.request_id)).one()
        return Received(winner.id, winner.connection_id, winner.state, created=False)
    return Received(upload.id, None, upload.state, created=True)


def _without_document_bodies(candidate: Any) -> dict[str, Any]:
    """Keep what was sent, minus inline file bodies (they can be megabytes and are invalid anyway)."""
    if not isinstance(candidate, dict):
        return {"_invalid": repr(type(candidate).__name__)}
    kept = dict(candidate)
    documents = kept.get("documents")
    if isinstance(documents, list):
        kept["documents"] = [
            {k: (f"<{len(v)} base64 characters>" if k == "content_base64" and isinstance(v, str) else v) for k, v in d.items()}
            if isinstance(d, dict)
            else d
            for d in documents
        ]
    return kept


def upload_status(session: Session, request_id: str) -> dict[str, Any] | None:
    """Everything the main app may show about one upload, history included."""
    upload = session.scalar(select(Upload).where(Upload.request_id == request_id))
    if upload is None:
        return None
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
        "reason_code": upload.reason_code,
        "field": upload.error_field,
        "personio_status": upload.personio_status,
        "message": {"en": upload.message_en, "de": upload.message_de} if upload.message_en else None,
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
