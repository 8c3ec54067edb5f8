"""Events for the main app on a Redis stream: terminal upload outcomes and health changes.

Events go through a transactional outbox. A service publishes an event into the session
that records the state change (:class:`OutboxPublisher`), *before* its commit, so the
event is committed with the change or rolled back with it: an outcome never exists
without its event, nor an event without its outcome. :func:`relay_outbox` then sends the
committed events to the stream in ``id`` order, each with its ``event_id``, and deletes
them once Redis has them. It runs right after a task's commit (best effort) and from beat
every few seconds, so an event written while Redis is down goes out once Redis is back.

Delivery is at least once: a relay that dies between XADD and the delete sends the same
event again on its next run, with the same ``event_id``; consumers drop ids they saw.

Events carry ids, outcomes, reason codes and messages, never the candidate data the main
app sent: :func:`check_event` refuses any field outside :data:`EVENT_FIELDS`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import redis
from redis.exceptions import LockError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from models import OutboxEvent, utcnow

log = logging.getLogger(__name__)

# Every field an event may carry (besides the relay's ``event_id``). Adding one is a
# decision about what leaves this service: ids, outcomes, reason codes and messages only.
EVENT_FIELDS = frozenset(
    {
        "type",
        "at",
        # upload.finished / upload.invalid
        "request_id",
        "account_id",
        "project_id",
        "outcome",
        "reason_code",
        "field",
        "job_position_id",
        "message_en",
        "message_de",
        "errors",
        # connection.health
        "health",
        "previous",
        "resumed_uploads",
        # backfill.progress / backfill.finished / backfill.refused (ids and counts only)
        "backfill_id",
        "chunk_index",
        "state",
        "total",
        "counts",
        # connection.health into or out of rate_limited_sustained
        "rate_limited_since",
        "waiting_uploads",
        # retention.purged (counts only)
        "uploads",
        "documents",
        "document_bytes",
        "claims",
    }
)


class EventPublisher(Protocol):
    def publish(self, event: Mapping[str, Any]) -> None: ...


def check_event(event: Mapping[str, Any]) -> None:
    """Refuse an event without a ``type`` or with a field outside :data:`EVENT_FIELDS`."""
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise ValueError("an event needs a type")
    unknown = sorted(set(event) - EVENT_FIELDS)
    if unknown:
        raise ValueError(f"{event['type']} event has fields that are not allowed in events: {', '.join(unknown)}")


class OutboxPublisher:
    """Adds each event to ``session`` as an outbox row: it commits or rolls back with the session."""

    SESSION_FLAG = "personio_sync.outbox_published"

    def __init__(self, session: Session) -> None:
        self.session = session

    def publish(self, event: Mapping[str, Any]) -> None:
        check_event(event)
        payload = json.loads(json.dumps(dict(event), default=str, ensure_ascii=False))
        self.session.add(OutboxEvent(event_id=str(uuid.uuid4()), type=event["type"], payload=payload, created_at=utcnow()))
        # Tells whoever opened the session that a relay is worth running after it.
        self.session.info[self.SESSION_FLAG] = True


class ListPublisher:
    """Collects events in memory (tests)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: Mapping[str, Any]) -> None:
        check_event(event)
        self.events.append(dict(event))


def stream_fields(event_id: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """The flat string fields XADDed for one event: ``event_id``, ``type`` and the rest."""
    fields = {key: _flat(value) for key, value in payload.items() if value is not None and key != "event_id"}
    return {"event_id": event_id, **fields}


def relay_lock_key(stream: str) -> str:
    return f"{stream}:relay-lock"


def relay_outbox(
    session: Session,
    client: redis.Redis,
    stream: str,
    *,
    maxlen: int = 100_000,
    batch: int = 100,
    max_batches: int = 50,
    lock_ttl: float = 10.0,
) -> int:
    """XADD committed outbox events to ``stream`` in id order, then delete them; returns how many.

    One relay at a time per stream (a Redis lock with a TTL): a relay that finds another
    one running returns 0 at once, and the running one, or the next, sends the rest. The
    lock is short and renewed after every batch, so a relay that died with Redis (its lock
    surviving a restart) holds up the others for seconds, not a minute. When
    Redis fails, the events stay in the outbox for the next run (logged, not raised). A
    crash between XADD and the delete re-sends those events later with the same
    ``event_id``: at least once, never lost.
    """
    try:
        lock = client.lock(relay_lock_key(stream), timeout=lock_ttl, blocking=False)
        if not lock.acquire(blocking=False):
            log.debug("event relay already running elsewhere; skipped")
            return 0
    except redis.RedisError as exc:
        log.warning("events not relayed (Redis unavailable: %s); they stay in the outbox", type(exc).__name__)
        return 0
    sent = 0
    try:
        for _ in range(max_batches):
            rows = session.execute(
                select(OutboxEvent.id, OutboxEvent.event_id, OutboxEvent.payload).order_by(OutboxEvent.id).limit(batch)
            ).all()
            session.commit()  # deliberate commit point (see services): no transaction (SQLite: no write lock) while talking to Redis
            if not rows:
                break
            ids = [row.id for row in rows]
            pipe = client.pipeline(transaction=False)
            for row in rows:
                # arg-type: redis-py annotates ``fields`` as the invariant Dict[FieldT, EncodableT],
                # which rejects this dict[str, str] (str is an EncodableT; a Mapping is what it reads).
                pipe.xadd(stream, stream_fields(row.event_id, row.payload), maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
            try:
                pipe.execute()
            except redis.RedisError as exc:
                session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(attempts=OutboxEvent.attempts + 1))
                session.commit()
                log.warning("%d events not relayed (%s); they stay in the outbox", len(ids), type(exc).__name__)
                break
            session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(ids)))
            session.commit()  # this batch is in the stream: commit before the next Redis call (see services)
            sent += len(ids)
            if len(rows) < batch:
                break
            try:
                lock.reacquire()  # a long relay keeps its lock; a dead one loses it within lock_ttl
            except (LockError, redis.RedisError):
                log.warning("event relay lost its lock; stopping here, the next relay sends the rest")
                break
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("event relay outlived its lock (%ss); another relay may have sent some events twice", lock_ttl)
        except redis.RedisError:
            pass  # Redis went away; the lock's TTL frees it
    if sent:
        log.info("%d events relayed to %s", sent, stream)
    return sent


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False)
