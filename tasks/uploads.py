"""Upload tasks: thin wrappers that open a session and call one service function."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task, shared_task
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from config.names import PROCESS_UPLOAD_TASK, UPLOAD_TASK
from models import UploadState, utcnow
from services.intake import record_intake_failure
from services.processing import process_upload
from services.uploads import receive_upload
from tasks.dispatching import dispatch_now, wake
from worker.runtime import get_runtime

log = logging.getLogger(__name__)


# Failures that pass: the database or Redis is briefly away, SQLite is busy.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, SQLAlchemyTimeoutError, redis.RedisError, OSError)
# An unexpected error is retried this often before the request is recorded as failed.
INTAKE_RETRIES = 5


def intake_backoff(retries: int) -> float:
    """Seconds before the next intake attempt: 1, 2, 4 … capped at 60 s."""
    return float(min(60, 2**retries))


@shared_task(name=UPLOAD_TASK, bind=True, acks_late=True, max_retries=None)
def upload_candidate(self: Task, request: Any) -> None:
    """The main app's entry point: record one upload request, then dispatch its company.

    Never acked without a status: a transient failure is retried (a new message with the same
    task id, sent before this one is acked) until it passes; any other failure is retried
    ``INTAKE_RETRIES`` times, then the request is recorded as ``failed`` with the reason.
    """
    runtime = get_runtime()
    try:
        with runtime.session() as session:
            received = receive_upload(session, request, policy=runtime.intake_policy(), events=runtime.events_for(session), now=utcnow())
    except TRANSIENT_ERRORS as error:
        log.warning("intake of message %s failed (%s); retry %d", self.request.id, type(error).__name__, self.request.retries + 1)
        raise self.retry(countdown=intake_backoff(self.request.retries)) from None
    except Exception as error:
        if self.request.retries < INTAKE_RETRIES:
            log.exception("intake of message %s failed unexpectedly; retry %d", self.request.id, self.request.retries + 1)
            raise self.retry(countdown=intake_backoff(self.request.retries)) from None
        with runtime.session() as session:
            record_intake_failure(session, request, error=type(error).__name__, events=runtime.events_for(session), now=utcnow())
        return
    if received.created and received.connection_id is not None and received.state == UploadState.QUEUED:
        try:
            dispatch_now(received.connection_id)
        except TRANSIENT_ERRORS as error:
            # Recorded and queued: the beat pump dispatches it once Redis answers again.
            log.warning("dispatch after intake of %s deferred to the pump (%s)", received.upload_id, type(error).__name__)


@shared_task(name=PROCESS_UPLOAD_TASK, acks_late=True)
def process_upload_task(upload_id: int, lease_token: str) -> None:
    """Send one claimed upload as far as the company's budget allows, then dispatch the next."""
    runtime = get_runtime()
    with runtime.session() as session:
        result = process_upload(session, runtime.deps(session, wake=wake), upload_id, lease_token)
    if result.connection_id is None:
        return
    if result.wake_in is not None:
        wake(result.connection_id, result.wake_in)
    dispatch_now(result.connection_id)
