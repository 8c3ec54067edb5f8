"""``personio-sync forget EMAIL``: erase one person's data everywhere this system holds it.

Two halves, Redis first, then the database, so that whatever a queue still held is recorded
before the database is searched:

- :func:`forget_in_redis` looks at every message that has not become an upload yet — our queues
  (every priority list), the holding hash of popped messages, kombu's unacknowledged messages,
  the dead letters — and at the events stream. A message is decoded (JSON, then its base64
  body) and searched for the address. An upload request for the person is removed and its
  ``request_id`` returned, so the database half records it as stopped; in a backfill only the
  person's entries are replaced by an empty candidate under the same ``request_id`` (the other
  candidates go through as sent). A dead letter or stream entry that mentions the address is
  deleted.
- :func:`forget_in_database` finds the person's uploads by address, by its keyed digest (after
  the retention purge) and, for refused requests that recorded no address, by searching the
  stored candidate. An upload still in flight is stopped as ``rejected`` with reason
  ``personio-sync.forgotten`` (and its outcome event). Every upload is reduced like the
  retention purge does, more strictly: no digest is kept and its document rows are deleted.
  The person's duplicate-guard claims are deleted, and events waiting in the outbox that quote
  the person are redacted.

What stays of a forgotten upload: its ids (``request_id``, account, project), state, reason
code and timestamps, so the main app's status requests still answer. A step that was talking
to Personio at that very moment may still finish its request (it stops at its next commit);
what Personio already holds is erased in Personio.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import redis
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, selectinload

from config.names import (
    ALL_QUEUES,
    DEAD_LETTERS_KEY,
    EVENTS_STREAM,
    HOLDING_INDEX_KEY,
    HOLDING_KEY,
    KOMBU_PRIORITY_SEPARATOR,
    KOMBU_UNACKED_INDEX_KEY,
    KOMBU_UNACKED_KEY,
    UPLOAD_TASK,
)
from models import ApplicationClaim, OutboxEvent, Priority, Upload, UploadState
from services.events import EventPublisher
from services.retention import EmailDigests, claim_keys, personal_values, redact
from services.schemas import printable_id, usable_request_id
from services.uploads import finish, normalise_email, outcome_event, transition

log = logging.getLogger(__name__)

FORGOTTEN = "personio-sync.forgotten"
_SCAN_BATCH = 500
# kombu's priority steps (0 is the bare queue name).
_PRIORITIES = (3, 6, 9)


def email_pattern(email_normalized: str) -> re.Pattern[str]:
    """The address as a whole word, in any case (``x@a.de`` does not match ``ax@a.de``)."""
    return re.compile(r"(?<![\w.+-])" + re.escape(email_normalized) + r"(?![\w-]|\.\w)", re.IGNORECASE)


def looks_like_email(text: str) -> bool:
    return re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text.strip()) is not None


def mentions(value: Any, pattern: re.Pattern[str]) -> bool:
    """Whether any text in ``value`` (nested dicts and lists) contains the address."""
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, dict):
        return any(mentions(k, pattern) or mentions(v, pattern) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(mentions(item, pattern) for item in value)
    return False


@dataclass(frozen=True)
class StoppedRequest:
    """An upload request removed from Redis before it was recorded: recorded as forgotten."""

    request_id: str
    account_id: str
    project_id: str
    backfill_id: str | None = None


@dataclass
class RedisForgetReport:
    queued_messages_removed: int = 0
    queued_messages_rewritten: int = 0  # backfills: the person's entries emptied, the rest kept
    held_messages: int = 0  # in the holding hash (popped, not yet handed to a worker)
    unacked_messages: int = 0  # with a worker, not yet acknowledged
    dead_letters_removed: int = 0
    stream_events_removed: int = 0
    stopped_requests: list[StoppedRequest] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "queued_messages_removed": self.queued_messages_removed,
            "queued_messages_rewritten": self.queued_messages_rewritten,
            "held_messages": self.held_messages,
            "unacked_messages": self.unacked_messages,
            "dead_letters_removed": self.dead_letters_removed,
            "stream_events_removed": self.stream_events_removed,
        }


@dataclass
class DatabaseForgetReport:
    uploads: int = 0  # uploads of the person found (any state)
    uploads_stopped: int = 0  # of those, still in flight: now rejected (personio-sync.forgotten)
    requests_recorded: int = 0  # requests removed from Redis, recorded as forgotten
    documents_deleted: int = 0
    document_bytes_deleted: int = 0
    claims_deleted: int = 0
    history_entries_redacted: int = 0
    outbox_events_redacted: int = 0

    def counts(self) -> dict[str, int]:
        return dict(self.__dict__)


# ------------------------------------------------------------------ Redis


class _Envelope:
    """A kombu message (the JSON pushed on a queue) with its decoded body ``[args, kwargs, embed]``."""

    def __init__(self, payload: dict[str, Any], body: list[Any] | None) -> None:
        self.payload = payload
        self.body = body

    @classmethod
    def parse(cls, raw: str | bytes) -> _Envelope | None:
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(payload, dict):
            return None
        return cls.of(payload)

    @classmethod
    def of(cls, payload: dict[str, Any]) -> _Envelope:
        body: list[Any] | None = None
        if isinstance(payload.get("body"), str):
            try:
                decoded = json.loads(base64.b64decode(payload["body"].encode("ascii"), validate=True))
                body = decoded if isinstance(decoded, list) else None
            except (ValueError, UnicodeError, binascii.Error, RecursionError):
                body = None
        return cls(payload, body)

    @property
    def task(self) -> str | None:
        headers = self.payload.get("headers")
        task = headers.get("task") if isinstance(headers, dict) else None
        return task if isinstance(task, str) else None

    @property
    def first_argument(self) -> Any:
        if self.body and isinstance(self.body[0], list) and self.body[0]:
            return self.body[0][0]
        return None

    def encoded(self) -> dict[str, Any]:
        payload = dict(self.payload)
        payload["body"] = base64.b64encode(json.dumps(self.body).encode("utf-8")).decode("ascii")
        return payload


def _scrub_envelope(envelope: _Envelope, pattern: re.Pattern[str]) -> tuple[str, dict[str, Any] | None, list[StoppedRequest]]:
    """What to do with one message: ``("keep"|"remove"|"rewrite", new payload, stopped requests)``."""
    if not mentions(envelope.payload, pattern) and not mentions(envelope.body, pattern):
        return "keep", None, []
    argument = envelope.first_argument
    if isinstance(argument, dict) and isinstance(argument.get("candidates"), list) and envelope.body:
        # A backfill (or one chunk of it): only the person's entries are emptied, in place, so
        # every entry keeps its request_id and position; intake records those as refused.
        entries = [_emptied(entry) if mentions(entry, pattern) else entry for entry in argument["candidates"]]
        arguments = [{**argument, "candidates": entries}, *envelope.body[0][1:]]
        payload = dict(envelope.payload)
        if isinstance(payload.get("headers"), dict):
            payload["headers"] = {**payload["headers"], "argsrepr": "[<backfill>]", "kwargsrepr": "{}"}
        rewritten = _Envelope(payload, [arguments, *envelope.body[1:]])
        new_payload = rewritten.encoded()
        if not mentions(new_payload, pattern) and not mentions(rewritten.body, pattern):
            return "rewrite", new_payload, []
        return "remove", None, []
    stopped = []
    request_id = usable_request_id(argument.get("request_id")) if isinstance(argument, dict) else None
    if envelope.task == UPLOAD_TASK and isinstance(argument, dict) and request_id is not None:
        stopped.append(StoppedRequest(request_id, printable_id(argument.get("account_id")) or "", printable_id(argument.get("project_id")) or ""))
    return "remove", None, stopped


def _emptied(entry: Any) -> Any:
    """A backfill entry without its candidate: ``{"request_id", "candidate": {}}`` or an empty candidate."""
    if isinstance(entry, dict) and "candidate" in entry:
        return {"request_id": entry.get("request_id"), "candidate": {}} if "request_id" in entry else {"candidate": {}}
    return {}


def _scrub_raw(raw: str, pattern: re.Pattern[str]) -> tuple[str, str | None, list[StoppedRequest]]:
    envelope = _Envelope.parse(raw)
    if envelope is None:
        return ("remove", None, []) if pattern.search(raw) else ("keep", None, [])
    action, payload, stopped = _scrub_envelope(envelope, pattern)
    return action, json.dumps(payload) if payload is not None else None, stopped


# Replace one list item by another (or remove it) only if it is still there.
_SWAP_LIST_ITEM = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  if ARGV[2] ~= '' then redis.call('LPUSH', KEYS[1], ARGV[2]) end
  return 1
end
return 0
"""

# Replace one hash field's value (or delete the field and its index entry) only if unchanged.
# KEYS: hash, index. ARGV: field, old value, new value ('' deletes), other fields to delete, index member.
_SWAP_HASH_ITEM = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  else
    redis.call('HDEL', KEYS[1], ARGV[1])
    if ARGV[4] ~= '' then redis.call('HDEL', KEYS[1], ARGV[4]) end
    redis.call('ZREM', KEYS[2], ARGV[5])
  end
  return 1
end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _list_items(client: redis.Redis, key: str, chunk: int = 1000) -> Iterator[bytes | str]:
    """Every item of a list, read in chunks (a snapshot; items may move meanwhile)."""
    start = 0
    while True:
        items = cast("list[bytes | str]", client.lrange(key, start, start + chunk - 1))
        if not items:
            return
        yield from items  # as stored: a swap must name the exact bytes, valid UTF-8 or not
        if len(items) < chunk:
            return
        start += chunk


def forget_in_redis(
    client: redis.Redis,
    email: str,
    *,
    queues: tuple[str, ...] = ALL_QUEUES,
    holding_key: str = HOLDING_KEY,
    holding_index_key: str = HOLDING_INDEX_KEY,
    unacked_key: str = KOMBU_UNACKED_KEY,
    unacked_index_key: str = KOMBU_UNACKED_INDEX_KEY,
    dead_letters_key: str = DEAD_LETTERS_KEY,
    events_stream: str = EVENTS_STREAM,
) -> RedisForgetReport:
    """Remove the person's data from queued, held, unacknowledged and dead-lettered messages and the stream."""
    pattern = email_pattern(normalise_email(email))
    report = RedisForgetReport()
    swap_list = client.register_script(_SWAP_LIST_ITEM)
    swap_hash = client.register_script(_SWAP_HASH_ITEM)

    for queue in queues:
        for key in (queue, *(f"{queue}{KOMBU_PRIORITY_SEPARATOR}{p}" for p in _PRIORITIES)):
            for item in list(_list_items(client, key)):
                action, new, stopped = _scrub_raw(_text(item), pattern)
                if action == "keep" or not swap_list(keys=[key], args=[item, new or ""]):
                    continue
                report.stopped_requests += stopped
                if action == "rewrite":
                    report.queued_messages_rewritten += 1
                else:
                    report.queued_messages_removed += 1

    held = cast("dict[bytes | str, bytes | str]", client.hgetall(holding_key))
    for raw_field, raw_value in held.items():
        name = _text(raw_field)
        if not name.endswith(":item"):
            continue
        held_id = name[: -len(":item")]
        action, new, stopped = _scrub_raw(_text(raw_value), pattern)
        if action != "keep" and swap_hash(keys=[holding_key, holding_index_key], args=[raw_field, raw_value, new or "", f"{held_id}:queue", held_id]):
            report.held_messages += 1
            report.stopped_requests += stopped

    unacked = cast("dict[bytes | str, bytes | str]", client.hgetall(unacked_key))
    for raw_tag, raw_value in unacked.items():
        try:
            record = json.loads(_text(raw_value))
        except ValueError:
            continue
        if not (isinstance(record, list) and record and isinstance(record[0], dict)):
            continue
        action, payload, stopped = _scrub_envelope(_Envelope.of(record[0]), pattern)
        new = json.dumps([payload, *record[1:]]) if payload is not None else ""
        if action != "keep" and swap_hash(keys=[unacked_key, unacked_index_key], args=[raw_tag, raw_value, new, "", raw_tag]):
            report.unacked_messages += 1
            report.stopped_requests += stopped

    for stored in list(_list_items(client, dead_letters_key)):
        if _dead_letter_mentions(_text(stored), pattern) and swap_list(keys=[dead_letters_key], args=[stored, ""]):
            report.dead_letters_removed += 1

    report.stream_events_removed = _forget_in_stream(client, events_stream, pattern)
    return report


def _dead_letter_mentions(stored: str, pattern: re.Pattern[str]) -> bool:
    if pattern.search(stored):
        return True
    try:
        record = json.loads(stored)
        raw = base64.b64decode(record["raw_base64"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return False
    text = raw.decode("utf-8", "replace")
    if pattern.search(text):
        return True
    envelope = _Envelope.parse(text)
    return envelope is not None and (mentions(envelope.payload, pattern) or mentions(envelope.body, pattern))


def _forget_in_stream(client: redis.Redis, stream: str, pattern: re.Pattern[str], chunk: int = 1000) -> int:
    removed = 0
    start = "-"
    while True:
        entries = cast("list[tuple[bytes | str, dict[bytes | str, bytes | str]]]", client.xrange(stream, min=start, max="+", count=chunk))
        if not entries:
            return removed
        matching = [_text(entry_id) for entry_id, fields in entries if any(pattern.search(_text(v)) for v in fields.values())]
        if matching:
            removed += int(cast("int", client.xdel(stream, *matching)))
        if len(entries) < chunk:
            return removed
        start = "(" + _text(entries[-1][0])


# ------------------------------------------------------------------ database


def _uploads_of(session: Session, email_normalized: str, keys: tuple[str, ...], pattern: re.Pattern[str]) -> list[int]:
    ids = set(session.scalars(select(Upload.id).where(Upload.email_normalized.in_(keys))))
    # Refused requests record no address (their candidate is kept as sent): search those.
    last = 0
    while True:
        rows = session.execute(
            select(Upload.id, Upload.candidate)
            .where(Upload.email_normalized.is_(None), Upload.purged_at.is_(None), Upload.id > last)
            .order_by(Upload.id)
            .limit(_SCAN_BATCH)
        ).all()
        if not rows:
            break
        ids.update(row.id for row in rows if mentions(row.candidate, pattern))
        last = rows[-1].id
    return sorted(ids)


def _record_stopped(session: Session, request: StoppedRequest, *, now: datetime, events: EventPublisher) -> bool:
    if session.scalar(select(Upload.id).where(Upload.request_id == request.request_id)) is not None:
        return False  # recorded meanwhile: found by address like any other
    upload = Upload(
        request_id=request.request_id,
        account_id=request.account_id,
        project_id=request.project_id,
        candidate={},
        priority=Priority.BACKFILL if request.backfill_id else Priority.INTERACTIVE,
        backfill_id=request.backfill_id,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        purged_at=now,
    )
    transition(upload, UploadState.QUEUED, now)
    finish(upload, UploadState.REJECTED, now, reason_code=FORGOTTEN)
    session.add(upload)
    events.publish(outcome_event(upload))
    return True


def forget_in_database(
    session: Session,
    email: str,
    *,
    now: datetime,
    events: EventPublisher,
    digests: EmailDigests | None,
    stopped_requests: list[StoppedRequest] | tuple[StoppedRequest, ...] = (),
) -> DatabaseForgetReport:
    """Erase the person's data from uploads, documents, history, claims and the outbox; flushes, the caller commits."""
    email_normalized = normalise_email(email)
    keys = claim_keys(email_normalized, digests)
    pattern = email_pattern(email_normalized)
    report = DatabaseForgetReport()

    for request in stopped_requests:
        report.requests_recorded += _record_stopped(session, request, now=now, events=events)

    upload_ids = _uploads_of(session, email_normalized, keys, pattern)
    redacted_values: set[str] = {email_normalized}
    request_ids: set[str] = set()
    for start in range(0, len(upload_ids), _SCAN_BATCH):
        uploads = session.scalars(
            select(Upload)
            .where(Upload.id.in_(upload_ids[start : start + _SCAN_BATCH]))
            .options(selectinload(Upload.documents), selectinload(Upload.events))
        ).all()
        for upload in uploads:
            report.uploads += 1
            request_ids.add(upload.request_id)
            values = sorted(set(personal_values(upload)) | {email_normalized}, key=len, reverse=True)
            redacted_values.update(values)
            for document in upload.documents:
                report.documents_deleted += 1
                if document.content is not None:
                    report.document_bytes_deleted += document.size or len(document.content)
            stopped = not upload.is_terminal
            if stopped:
                finish(upload, UploadState.REJECTED, now, reason_code=FORGOTTEN)
                report.uploads_stopped += 1
            upload.documents.clear()  # rows and bytes: no file name or hash of the person's CV stays
            upload.candidate = {}
            upload.email_normalized = None
            upload.message_en = redact(upload.message_en, values)
            upload.message_de = redact(upload.message_de, values)
            for event in upload.events:
                new_detail, new_code = redact(event.detail, values), redact(event.reason_code, values)
                if (new_detail, new_code) != (event.detail, event.reason_code):
                    report.history_entries_redacted += 1
                event.detail, event.reason_code = new_detail, new_code
            upload.purged_at = now
            if stopped:
                events.publish(outcome_event(upload))
        session.flush()

    claim_ids = list(
        session.scalars(
            select(ApplicationClaim.id).where(
                or_(ApplicationClaim.email_normalized.in_(keys), ApplicationClaim.upload_id.in_(upload_ids or [-1]))
            )
        )
    )
    if claim_ids:
        session.execute(delete(ApplicationClaim).where(ApplicationClaim.id.in_(claim_ids)).execution_options(synchronize_session=False))
    report.claims_deleted = len(claim_ids)
    ordered_values = sorted(redacted_values, key=len, reverse=True)
    report.outbox_events_redacted = _redact_outbox(session, lambda payload: payload.get("request_id") in request_ids or mentions(payload, pattern), ordered_values)
    session.flush()
    # Counts only: the address is what is being forgotten.
    log.info("forget: %s", ", ".join(f"{key} {value}" for key, value in report.counts().items()))
    return report


def _redact_outbox(session: Session, concerns: Callable[[dict[str, Any]], bool], values: list[str]) -> int:
    changed = 0
    last = 0
    while True:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.id > last).order_by(OutboxEvent.id).limit(_SCAN_BATCH)).all()
        if not rows:
            return changed
        for row in rows:
            if concerns(row.payload):
                redacted = _redact_json(row.payload, values)
                if redacted != row.payload:
                    row.payload = redacted
                    changed += 1
        last = rows[-1].id


def _redact_json(value: Any, values: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, values)
    if isinstance(value, dict):
        return {k: _redact_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, values) for v in value]
    return value
