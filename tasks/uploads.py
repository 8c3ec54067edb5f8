"""Upload tasks: thin wrappers that open a session and call one service function."""

from __future__ import annotations

import logging
from typing import Any

from config.names import BACKFILL_TASK, PROCESS_UPLOAD_TASK, UPLOAD_TASK
from models import UploadState, utcnow
from services.processing import process_upload
from services.uploads import receive_upload
from tasks.dispatching import dispatch_now
from worker import app
from worker.runtime import get_runtime

log = logging.getLogger(__name__)


@app.task(name=UPLOAD_TASK, acks_late=True)
def upload_candidate(request: dict[str, Any]) -> None:
    """The main app's entry point: record one upload request, then dispatch its company."""
    runtime = get_runtime()
    with runtime.session() as session:
        received = receive_upload(session, request, policy=runtime.intake_policy(), events=runtime.events_for(session), now=utcnow())
    if received.created and received.connection_id is not None and received.state == UploadState.QUEUED:
        dispatch_now(received.connection_id)


@app.task(name=BACKFILL_TASK, acks_late=True)
def start_backfill(backfill: dict[str, Any]) -> None:
    """Record many candidates of one project as backfill uploads (they yield to recruiter clicks)."""
    from services.backfill import record_backfill

    runtime = get_runtime()
    with runtime.session() as session:
        connection_ids = record_backfill(session, backfill, policy=runtime.intake_policy(), events=runtime.events_for(session), now=utcnow())
    for connection_id in connection_ids:
        dispatch_now(connection_id)


@app.task(name=PROCESS_UPLOAD_TASK, acks_late=True)
def process_upload_task(upload_id: int, lease_token: str) -> None:
    """Send one claimed upload as far as the company's budget allows, then dispatch the next."""
    runtime = get_runtime()
    with runtime.session() as session:
        result = process_upload(session, runtime.deps(session), upload_id, lease_token)
    if result.connection_id is None:
        return
    if result.wake_in is not None:
        runtime.wake(result.connection_id, result.wake_in)
    dispatch_now(result.connection_id)
