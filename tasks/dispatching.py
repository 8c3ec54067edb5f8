"""Sending claimed uploads to the workers, and the wake-up timer (shared by the tasks).

Messages are sent by task name through the app, so this module needs no task module and no
task module needs it back.
"""

from __future__ import annotations

from typing import cast

from config.names import (
    BACKFILL_QUEUE,
    DISPATCH_CONNECTION_TASK,
    INTERACTIVE_QUEUE,
    PROCESS_UPLOAD_TASK,
    WAKE_KEY,
)
from models import Priority, utcnow
from services.dispatch import dispatch_connection
from worker.app import get_app
from worker.runtime import get_runtime


def dispatch_now(connection_id: int) -> int:
    """Claim what the connection's company can start now and enqueue it; returns how many."""
    runtime = get_runtime()
    with runtime.session() as session:
        result = dispatch_connection(
            session, connection_id, policy=runtime.upload_policy, limiter=runtime.limiter, now=utcnow(), latency=runtime.latency
        )
    # The session committed the claim as the block ended: only now may its messages go out.
    app = get_app()
    for claimed in result.claimed:
        queue = INTERACTIVE_QUEUE if claimed.priority == Priority.INTERACTIVE else BACKFILL_QUEUE
        app.send_task(PROCESS_UPLOAD_TASK, args=(claimed.upload_id, claimed.lease_token), queue=queue)
    if result.wake_in is not None:
        wake(connection_id, result.wake_in)
    return len(result.claimed)


def wake(connection_id: int, delay: float) -> None:
    """Dispatch the connection again after ``delay`` s: the earliest wanted timer per connection.

    Waits for the rate budget (at most its window) get a timer message, so the company's next
    slot is used when it frees rather than at the next pump tick (issue 12). A timer already due
    as early or earlier makes a new one unnecessary; an earlier wish sends one more (the later
    timer then finds little to do). Longer waits (backoffs, lock-outs) are left to the beat pump,
    so waiting work never piles up as countdown messages in worker memory.
    """
    runtime = get_runtime()
    settings = runtime.settings
    if delay > max(settings.pump_interval, settings.rate_limit.period + settings.rate_limit_margin):
        return
    key = WAKE_KEY.format(connection_id=connection_id)
    delay_ms = max(int(delay * 1000), 1)
    # -2: no timer. Not atomic: a racing second timer only dispatches once more. (Sync client.)
    pending_ms = int(cast("int", runtime.redis.pttl(key)))
    if 0 <= pending_ms <= delay_ms:
        return
    runtime.redis.set(key, "1", px=delay_ms)
    get_app().send_task(DISPATCH_CONNECTION_TASK, args=(connection_id,), countdown=delay)
