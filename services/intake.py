"""The last resort of intake: a request that could not be recorded after every retry.

``receive_upload`` records every request, valid or not; only an unexpected failure (a bug, a
database that keeps refusing) can stop it. The task retries such failures with backoff, and
after the last retry records the request here as ``failed`` with the reason, so the main app
sees a status instead of nothing. Only ids are kept: the payload may be what failed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Priority, Upload, UploadState
from services.events import EventPublisher
from services.schemas import usable_request_id
from services.uploads import finish, outcome_event, transition

log = logging.getLogger(__name__)

INTAKE_FAILED = "personio-sync.intake-failed"


def _id(payload: Any, key: str) -> str | None:
    return usable_request_id(payload.get(key) if isinstance(payload, dict) else None)


def record_intake_failure(session: Session, payload: Any, *, error: str, events: EventPublisher, now: datetime) -> UploadState | None:
    """Record the request as ``failed`` (reason ``personio-sync.intake-failed``); returns its state.

    Returns None when the request has no usable ``request_id`` (then only an event says so).
    An upload already recorded under the id is left as it is.
    """
    request_id = _id(payload, "request_id")
    if request_id is None:
        events.publish({"type": "upload.invalid", "outcome": UploadState.FAILED.value, "reason_code": INTAKE_FAILED, "at": now.isoformat()})
        session.flush()  # the caller commits (see services)
        return None
    existing = session.scalar(select(Upload).where(Upload.request_id == request_id))
    if existing is not None:
        return existing.state
    upload = Upload(
        request_id=request_id,
        account_id=_id(payload, "account_id") or "",
        project_id=_id(payload, "project_id") or "",
        candidate={},
        priority=Priority.INTERACTIVE,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    transition(upload, UploadState.QUEUED, now)
    finish(upload, UploadState.FAILED, now, reason_code=INTAKE_FAILED, detail=error)
    try:
        with session.begin_nested():  # a SAVEPOINT settles the request_id race; the caller commits (see services)
            session.add(upload)
            events.publish(outcome_event(upload))
    except IntegrityError:
        return session.scalars(select(Upload.state).where(Upload.request_id == request_id)).one()
    log.error("upload %s could not be recorded (%s); marked failed", request_id, error)
    return upload.state
