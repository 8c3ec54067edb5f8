"""Backfill tasks: the chunked contract (start, add, seal), steering, and the progress beat.

Thin wrappers over ``services.backfill``: each opens a session (committed when its block ends)
and dispatches the company when something new can be sent.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Task, shared_task

from config import Settings
from config.names import (
    BACKFILL_CANCEL_TASK,
    BACKFILL_CHUNK_TASK,
    BACKFILL_PAUSE_TASK,
    BACKFILL_PROGRESS_TASK,
    BACKFILL_RESUME_TASK,
    BACKFILL_SEAL_TASK,
    BACKFILL_TASK,
    EVENT_BACKFILL_REFUSED,
)
from models import utcnow
from services.backfill import (
    BackfillNotStarted,
    BackfillStateError,
    CompanyBudget,
    add_to_backfill,
    cancel_backfill,
    pause_backfill,
    publish_progress,
    record_backfill,
    resume_backfill,
    seal_backfill,
    start_backfill,
)
from tasks.dispatching import dispatch_now
from tasks.uploads import TRANSIENT_ERRORS, intake_backoff
from worker.runtime import get_runtime

log = logging.getLogger(__name__)

# Chunks recorded at once by one worker process. Their transactions serialise on the database
# anyway (SQLite's write lock, the uploads' unique index); a chunk waiting here holds only its
# message, not the uploads, documents and rows it is turned into, so a worker with 32 threads
# busy with chunks stays at a few chunks' worth of memory.
INTAKE_SLOTS = threading.BoundedSemaphore(2)

# A chunk or seal that arrives before its start is retried this often (1, 2, 4 … 60 s apart:
# about half an hour) before it is refused with a backfill.refused event.
NOT_STARTED_RETRIES = 35


def company_budget(settings: Settings) -> CompanyBudget:
    """The budget the limiter enforces: the configured requests over the period widened by the margin."""
    return CompanyBudget(settings.rate_limit.limit, settings.rate_limit.period + settings.rate_limit_margin)


def _dispatch_after_intake(connection_id: int | None) -> None:
    if connection_id is None:
        return
    try:
        dispatch_now(connection_id)
    except TRANSIENT_ERRORS as error:
        log.warning("dispatch after backfill intake deferred to the pump (%s)", type(error).__name__)


@shared_task(name=BACKFILL_TASK, bind=True, acks_late=True, max_retries=None)
def start_backfill_task(self: Task, backfill: Any) -> None:
    """Open a backfill; the single-message form (with ``candidates``) is recorded as before."""
    runtime = get_runtime()
    try:
        with runtime.session() as session:
            events = runtime.events_for(session)
            if isinstance(backfill, dict) and "candidates" in backfill:
                connection_ids = record_backfill(session, backfill, policy=runtime.intake_policy(), events=events, now=utcnow())
            else:
                start_backfill(session, backfill, events=events, now=utcnow())
                connection_ids = set()
    except TRANSIENT_ERRORS as error:
        log.warning("backfill start %s failed (%s); retry %d", self.request.id, type(error).__name__, self.request.retries + 1)
        raise self.retry(countdown=intake_backoff(self.request.retries)) from None
    for connection_id in connection_ids:
        _dispatch_after_intake(connection_id)


def _refuse_not_started(kind: str, payload: Any) -> None:
    runtime = get_runtime()
    raw_id = payload.get("backfill_id") if isinstance(payload, dict) else None
    with runtime.session() as session:
        runtime.events_for(session).publish(
            {
                "type": EVENT_BACKFILL_REFUSED,
                "backfill_id": raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None,
                "reason_code": "personio-sync.invalid-request",
                "errors": [f"backfill_id: no start_backfill arrived for this backfill; send start_backfill first, then the {kind} again."],
                "at": utcnow().isoformat(),
            }
        )


@shared_task(name=BACKFILL_CHUNK_TASK, bind=True, acks_late=True, max_retries=None)
def add_to_backfill_task(self: Task, chunk: Any) -> None:
    """Record one chunk of a backfill (one transaction); a chunk seen before records nothing."""
    runtime = get_runtime()
    try:
        with INTAKE_SLOTS, runtime.session() as session:
            result = add_to_backfill(session, chunk, policy=runtime.intake_policy(), events=runtime.events_for(session), now=utcnow())
    except BackfillNotStarted:
        if self.request.retries < NOT_STARTED_RETRIES:
            raise self.retry(countdown=intake_backoff(self.request.retries)) from None
        _refuse_not_started("chunk", chunk)
        return
    except TRANSIENT_ERRORS as error:
        log.warning("backfill chunk %s failed (%s); retry %d", self.request.id, type(error).__name__, self.request.retries + 1)
        raise self.retry(countdown=intake_backoff(self.request.retries)) from None
    if result is not None and result.recorded:
        _dispatch_after_intake(result.connection_id)


@shared_task(name=BACKFILL_SEAL_TASK, bind=True, acks_late=True, max_retries=None)
def seal_backfill_task(self: Task, seal: Any) -> None:
    """Mark a backfill's set of candidates complete (it finishes once all are done)."""
    runtime = get_runtime()
    try:
        with runtime.session() as session:
            seal_backfill(session, seal, events=runtime.events_for(session), now=utcnow())
    except BackfillNotStarted:
        if self.request.retries < NOT_STARTED_RETRIES:
            raise self.retry(countdown=intake_backoff(self.request.retries)) from None
        _refuse_not_started("seal", seal)
    except TRANSIENT_ERRORS:
        raise self.retry(countdown=intake_backoff(self.request.retries)) from None


@shared_task(name=BACKFILL_PAUSE_TASK, acks_late=True)
def pause_backfill_task(backfill_id: str) -> None:
    """Stop starting uploads of the backfill (from the next dispatch on); half-sent ones finish."""
    runtime = get_runtime()
    try:
        with runtime.session() as session:
            if pause_backfill(session, backfill_id, now=utcnow()) is None:
                log.warning("pause: no backfill %s", backfill_id)
    except BackfillStateError as error:
        log.warning("pause refused: %s", error)


@shared_task(name=BACKFILL_RESUME_TASK, acks_late=True)
def resume_backfill_task(backfill_id: str) -> None:
    """Let a paused backfill's uploads be dispatched again."""
    runtime = get_runtime()
    try:
        with runtime.session() as session:
            backfill = resume_backfill(session, backfill_id, now=utcnow())
            connection_id = backfill.connection_id if backfill is not None else None
    except BackfillStateError as error:
        log.warning("resume refused: %s", error)
        return
    _dispatch_after_intake(connection_id)


@shared_task(name=BACKFILL_CANCEL_TASK, acks_late=True)
def cancel_backfill_task(backfill_id: str) -> int:
    """End every not-yet-started upload of the backfill ``cancelled`` (batches, one transaction each)."""
    return cancel_backfill_everything(backfill_id)


def cancel_backfill_everything(backfill_id: str) -> int:
    """Cancel in batches until nothing not-yet-started is left; returns how many uploads ended."""
    runtime = get_runtime()
    ended = 0
    more = True
    while more:
        try:
            with runtime.session() as session:
                _, count, more = cancel_backfill(session, backfill_id, events=runtime.events_for(session), now=utcnow())
        except BackfillStateError as error:
            log.warning("cancel refused: %s", error)
            return ended
        ended += count
    log.info("backfill %s cancelled: %d uploads ended cancelled", backfill_id, ended)
    return ended


@shared_task(name=BACKFILL_PROGRESS_TASK, acks_late=True)
def backfill_progress() -> int:
    """Beat: throttled progress events of the open backfills, and their completion."""
    runtime = get_runtime()
    with runtime.session() as session:
        return publish_progress(session, events=runtime.events_for(session), now=utcnow(), interval=runtime.settings.backfill_progress_interval)
