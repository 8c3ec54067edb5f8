"""Deciding what to send now: the database is the queue, Redis only carries claimed work.

Uploads wait in the database (``queued`` with ``next_attempt_at``). ``dispatch_connection``
claims, under a lease, at most as many of a connection's due uploads as its company can
start now (in-flight cap, rate budget) — recruiter clicks (interactive) before backfill —
and returns them for the caller to enqueue. So a company's backlog never fills the broker
and never delays another company, and a worker's memory does not grow with the backlog.

``reclaim_expired_leases`` is the reconciler: work whose lease ran out (a killed worker, a
lost message, a Redis restart without persistence) goes back to ``queued``; the pump then
dispatches it again. The lease is why a live attempt is never doubled.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from models import Connection, Priority, Upload, UploadState
from services.backfill import backfill_turns, mark_dispatched
from services.context import LatencyTracker, RateLimiter, UploadPolicy
from services.processing import new_lease_token
from services.uploads import due_uploads, transition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    upload_id: int
    lease_token: str
    priority: Priority
    connection_id: int


@dataclass(frozen=True)
class DispatchResult:
    claimed: list[Claimed]
    wake_in: float | None  # budget or cap is exhausted: try again after this many seconds


# Little's law gives the uploads in flight that keep the budget busy at the observed answer
# time; the headroom covers our own time between requests (commits, the Celery hop from one
# upload to the next), which the answer time does not contain. The spare ones wait for the next
# slot: a saturated sliding window frees its slots in bursts (it repeats its first burst every
# window), faster than its average rate, and a slot that frees while every upload is still
# waiting for an answer stays unused until one is done (measured: 0.967 of the budget per
# window at Personio's real pace with one spare, issue 12).
IN_FLIGHT_HEADROOM = 1.5
IN_FLIGHT_SPARE = 2
# In flight while a company has no observed answer time yet: the former fixed cap.
UNOBSERVED_IN_FLIGHT = 2


def in_flight_cap(*, rate: float, latency: float | None, maximum: int) -> int:
    """Uploads of one company allowed in flight: what ``rate`` requests/s keep busy at ``latency`` s each.

    At least 1 and at most ``maximum``. The budget itself is enforced per request by the limiter,
    so a higher cap never causes a 429; it only lets more uploads wait for their slot.
    """
    if maximum < 1:
        return 0
    if latency is None or not math.isfinite(latency) or not math.isfinite(rate):
        return min(UNOBSERVED_IN_FLIGHT, maximum)
    wanted = math.ceil(max(rate, 0.0) * max(latency, 0.0) * IN_FLIGHT_HEADROOM) + IN_FLIGHT_SPARE
    return max(1, min(maximum, wanted))


def dispatch_connection(
    session: Session,
    connection_id: int,
    *,
    policy: UploadPolicy,
    limiter: RateLimiter,
    now: datetime,
    latency: LatencyTracker | None = None,
) -> DispatchResult:
    """Claim what the company can start now: up to its in-flight cap and never more than its budget left.

    With ``latency`` the cap follows the company's observed answer time (:func:`in_flight_cap`,
    bounded by ``policy.company_concurrency``); without it the cap is that bound.
    """
    connection = session.get(Connection, connection_id)
    if connection is None:
        return DispatchResult([], None)
    in_flight = session.scalar(
        select(func.count()).select_from(Upload).where(
            Upload.connection_id == connection_id, Upload.state == UploadState.SENDING, Upload.lease_until > now
        )
    ) or 0
    cap = policy.company_concurrency
    if latency is not None:
        company = str(connection.company_id)
        mean = latency.means([company])[company]  # one field, not the company's whole hash
        cap = in_flight_cap(rate=policy.budget_per_second, latency=mean, maximum=policy.company_concurrency)
    free_slots = cap - in_flight
    if free_slots <= 0:
        return DispatchResult([], None)  # a finishing step dispatches the next one
    # Every upload ends with an application POST, so that is the budget that decides.
    budget = limiter.peek(str(connection.company_id), "applications" if policy.per_endpoint_budget else "recruiting")
    if not budget.granted and (budget.locked_out or budget.wait > policy.short_budget_wait):
        # Look again a moment early: the slot is claimed then, and the step sleeps the rest.
        return DispatchResult([], max(budget.wait - policy.short_budget_wait, 0.0))
    # ``remaining`` counts the slots left after one more request: one more can start (also when
    # the next slot frees within policy.short_budget_wait: the step sleeps until it does).
    wanted = min(free_slots, budget.remaining + 1 if budget.granted else 1)
    # The budget, not the cap, held the claims back: its slots free one after another, so look
    # again after one slot's time rather than waiting for a step to finish (which left a freed
    # slot unused for a whole answer time when answers were slow).
    budget_limited = wanted < free_slots
    # Indexed queries with a limit instead of a sort over the backlog: recruiter clicks first,
    # then the backfills in turns (round-robin; paused ones start nothing; services.backfill).
    candidates: list[tuple[int, Priority]] = [
        (upload_id, Priority.INTERACTIVE)
        for upload_id in session.scalars(due_uploads(connection_id, Priority.INTERACTIVE, now).limit(wanted))
    ]
    if len(candidates) < wanted:
        backfill_ids, served = backfill_turns(session, connection_id, wanted - len(candidates), now)
        candidates += [(upload_id, Priority.BACKFILL) for upload_id in backfill_ids]
        mark_dispatched(session, served, now)
    claimed: list[Claimed] = []
    lease_until = now + timedelta(seconds=policy.lease)
    for upload_id, priority in candidates:
        token = new_lease_token()
        # Conditional update: two dispatchers racing for the same row cannot both win.
        # Session.execute is typed Result for any statement; a DML statement gives a CursorResult.
        won = cast(
            "CursorResult[Any]",
            session.execute(
                update(Upload)
                .where(Upload.id == upload_id, Upload.state == UploadState.QUEUED)
                .values(state=UploadState.SENDING, lease_token=token, lease_until=lease_until, updated_at=now)
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if won:
            claimed.append(Claimed(upload_id, token, priority, connection_id))
    session.flush()  # the caller commits the claim before it sends the messages (see services)
    return DispatchResult(claimed, 1 / policy.budget_per_second if budget_limited and claimed else None)


def due_connections(
    session: Session,
    now: datetime,
    *,
    limit: int = 10_000,
    concurrency: int | None = None,
    latency: LatencyTracker | None = None,
    rate: float = 20 / 60,
) -> list[int]:
    """Connections with at least one upload due now (and, given ``concurrency``, a free slot).

    ``concurrency`` is the bound of the in-flight cap; with ``latency`` (and the budget's
    ``rate`` in requests/s) each company's slot is judged by its own cap (:func:`in_flight_cap`),
    as ``dispatch_connection`` will, so the pump does not open a transaction for a company that
    is at its cap (one pipelined Redis read for the companies with uploads in flight).

    Two queries for all connections: the pump must not open a transaction per company that is
    already busy (with hundreds of companies that was the worker's CPU). Their cost follows the
    number of connections and of uploads in flight, not the queued backlog: each connection is
    one index probe for its first due upload (a loose index scan), where a GROUP BY over the
    due uploads read every queued row on every pump tick. The plans are checked in
    tests/services/test_dispatch_plans.py.
    """
    # A correlated scalar subquery with LIMIT 1, not EXISTS: PostgreSQL may turn EXISTS into a
    # semi-join that reads the whole backlog; a subplan with a limit is one probe per connection.
    first_due = (
        select(Upload.connection_id)
        .where(
            Upload.state == UploadState.QUEUED,
            Upload.connection_id == Connection.id,
            Upload.priority.in_(list(Priority)),  # every priority: the index's third column
            Upload.next_attempt_at <= now,
        )
        .limit(1)
        .correlate(Connection)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Connection.id, Connection.company_id).where(first_due.is_not(None)).order_by(Connection.id).limit(limit)
    ).tuples().all()
    due = [connection_id for connection_id, _ in rows]
    if concurrency is None or not due:
        return due
    in_flight = dict(
        session.execute(
            select(Upload.connection_id, func.count())
            .where(Upload.state == UploadState.SENDING, Upload.lease_until > now)
            .group_by(Upload.connection_id)
        ).tuples().all()
    )
    caps = dict.fromkeys(due, concurrency)
    busy = [(connection_id, str(company_id)) for connection_id, company_id in rows if in_flight.get(connection_id, 0) > 0]
    if latency is not None and busy:
        # Only a company with uploads in flight can be at its cap (a cap is at least 1).
        means = latency.means([company for _, company in busy])
        for connection_id, company in busy:
            caps[connection_id] = in_flight_cap(rate=rate, latency=means.get(company), maximum=concurrency)
    return [connection_id for connection_id in due if in_flight.get(connection_id, 0) < caps[connection_id]]


def reclaim_expired_leases(session: Session, now: datetime, *, batch: int = 1000) -> int:
    """Return uploads whose lease expired to ``queued`` so they are dispatched again."""
    expired = session.scalars(
        select(Upload).where(Upload.state == UploadState.SENDING, Upload.lease_until < now).limit(batch)
    ).all()
    for upload in expired:
        upload.lease_token = None
        upload.lease_until = None
        upload.next_attempt_at = now
        transition(upload, UploadState.QUEUED, now, reason_code="lease expired; sending again")
    session.flush()
    if expired:
        log.warning("reconciler: %d uploads had lost their work (lease expired) and were queued again", len(expired))
    return len(expired)
