"""Sending claimed uploads to the workers (shared by the tasks)."""

from __future__ import annotations

from config.names import BACKFILL_QUEUE, INTERACTIVE_QUEUE
from models import Priority, utcnow
from services.dispatch import dispatch_connection
from worker.runtime import get_runtime


def dispatch_now(connection_id: int) -> int:
    """Claim what the connection's company can start now and enqueue it; returns how many."""
    from tasks.uploads import process_upload_task

    runtime = get_runtime()
    with runtime.session() as session:
        result = dispatch_connection(session, connection_id, policy=runtime.upload_policy, limiter=runtime.limiter, now=utcnow())
    for claimed in result.claimed:
        queue = INTERACTIVE_QUEUE if claimed.priority == Priority.INTERACTIVE else BACKFILL_QUEUE
        process_upload_task.apply_async((claimed.upload_id, claimed.lease_token), queue=queue)
    if result.wake_in is not None:
        runtime.wake(connection_id, result.wake_in)
    return len(result.claimed)
