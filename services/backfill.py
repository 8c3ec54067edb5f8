"""Backfills: many candidates of one project at once, behind every recruiter click."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from services.events import EventPublisher
from services.schemas import IntakePolicy
from services.uploads import receive_upload


def record_backfill(session: Session, backfill: Any, *, policy: IntakePolicy, events: EventPublisher, now: datetime) -> set[int]:
    """Record each candidate of a backfill as a ``backfill`` upload; return the connections touched.

    Each candidate's ``request_id`` is ``{backfill_id}:{index}`` unless the candidate entry
    brings its own, so a re-sent backfill records nothing twice.
    """
    if not isinstance(backfill, dict) or not isinstance(backfill.get("candidates") or [], list):
        # Nothing to record per candidate: say so on the stream instead of failing the task.
        events.publish({"type": "upload.invalid", "outcome": "rejected", "reason_code": "personio-sync.invalid-request",
                        "errors": ["backfill: must be an object whose candidates field is a list of candidates."], "at": now.isoformat()})
        session.flush()
        return set()
    raw_id = backfill.get("backfill_id")
    backfill_id = raw_id if isinstance(raw_id, str) else ""
    connections: set[int] = set()
    for index, entry in enumerate(backfill.get("candidates") or []):
        candidate = entry.get("candidate", entry) if isinstance(entry, dict) else entry
        request_id = entry.get("request_id") if isinstance(entry, dict) and "candidate" in entry else None
        request = {
            "request_id": request_id or f"{backfill_id}:{index}",
            "account_id": backfill.get("account_id"),
            "project_id": backfill.get("project_id"),
            "priority": "backfill",
            "candidate": candidate,
        }
        received = receive_upload(session, request, policy=policy, events=events, now=now, backfill_id=backfill_id[:64] or None)
        if received.created and received.connection_id is not None:
            connections.add(received.connection_id)
    return connections
