"""Backfills: many candidates of one project, sent in chunks, operated as a long-running job.

The contract (README, "Backfills"): ``start_backfill`` opens a backfill record, any number of
``add_to_backfill`` chunks add candidates (each chunk one short transaction, bounded in
candidates and bytes), an optional ``seal`` says the set is complete. Each candidate becomes a
``backfill`` upload whose ``request_id`` is ``{backfill_id}:{chunk_index}:{position}`` unless the
entry brings its own, and each chunk is remembered in ``backfill_chunks``: a chunk delivered
twice, or chunks out of order, record every candidate once.

While it runs, the record is steered (pause, resume, cancel) and read (``backfill_status``:
counts per state and outcome computed from the uploads, so they always add up, the current
rate and an ETA from the company's rate budget). ``redrive_uploads`` makes a backfill of
existing uploads (failed, rejected, held) and queues them again.

The dispatcher (``services.dispatch``) reads the records: a paused or cancelled backfill's
uploads are not started (half-sent ones finish), and the backfills of one company take turns.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnDefault,
    ColumnElement,
    FromClause,
    Table,
    and_,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.names import (
    BACKFILL_CHUNK_MAX_BYTES,
    BACKFILL_CHUNK_MAX_CANDIDATES,
    BACKFILL_ID_MAX_LENGTH,
    EVENT_BACKFILL_FINISHED,
    EVENT_BACKFILL_PROGRESS,
    EVENT_BACKFILL_REFUSED,
)
from models import (
    TERMINAL_STATES,
    ApplicationClaim,
    Backfill,
    BackfillChunk,
    BackfillKind,
    BackfillState,
    Connection,
    DocumentSource,
    Priority,
    ProjectLink,
    Upload,
    UploadDocument,
    UploadEvent,
    UploadState,
)
from services.events import EventPublisher
from services.schemas import IntakePolicy, load_upload_request, printable_id, usable_request_id
from services.uploads import (
    due_uploads,
    finish,
    new_upload,
    outcome_event,
    receive_upload,
    transition,
)

log = logging.getLogger(__name__)

# Limits of one add_to_backfill chunk (config.names). A chunk is one message and one
# transaction: bounded so that the broker, the worker and the database never hold more than
# this at once. 16 MiB fits one candidate with a 10 MiB inline CV (13.4 MiB as base64) and
# keeps a dead letter whole.
CHUNK_MAX_CANDIDATES = BACKFILL_CHUNK_MAX_CANDIDATES
CHUNK_MAX_BYTES = BACKFILL_CHUNK_MAX_BYTES
BACKFILL_ID_MAX = BACKFILL_ID_MAX_LENGTH
CANCEL_REASON = "personio-sync.backfill-cancelled"
# The window the current rate is measured over.
RATE_WINDOW = timedelta(minutes=10)

_STATE_ORDER = [state.value for state in UploadState]


class BackfillNotStarted(LookupError):
    """A chunk or seal for a backfill whose ``start_backfill`` has not arrived (yet)."""


@dataclass(frozen=True)
class CompanyBudget:
    """A company's Personio budget as the limiter enforces it: ``requests`` per ``period`` seconds."""

    requests: int
    period: float

    @property
    def per_second(self) -> float:
        return self.requests / self.period if self.period > 0 else 0.0


@dataclass(frozen=True)
class ChunkResult:
    backfill_id: str
    chunk_index: int
    recorded: int  # new uploads this chunk created
    duplicate: bool  # the chunk had been recorded before: nothing was done
    connection_id: int | None
    refused: str | None = None


# ------------------------------------------------------------------ validation


def valid_backfill_id(value: Any) -> str | None:
    """``value`` if it is a usable backfill id (a request_id of at most 64 characters)."""
    found = usable_request_id(value)
    return found if found is not None and len(found) <= BACKFILL_ID_MAX else None


def _backfill_id_error(value: Any) -> str:
    return (
        "backfill_id: is required and must be 1–64 characters of letters, digits and . _ : -, "
        "starting with a letter or digit (a UUID is ideal)."
    )


def _payload_backfill_id(payload: Mapping[str, Any], errors: list[str]) -> str | None:
    backfill_id = valid_backfill_id(payload.get("backfill_id"))
    if backfill_id is None:
        errors.append(_backfill_id_error(payload.get("backfill_id")))
    return backfill_id


def _plain_text_id(payload: Mapping[str, Any], name: str, errors: list[str], *, required: bool = True) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    found = printable_id(value, 128)
    if found is None:
        errors.append(f"{name}: is required and must be 1–128 characters without control characters.")
    return found


def _count(payload: Mapping[str, Any], name: str, errors: list[str]) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000_000:
        errors.append(f"{name}: must be a whole number from 0 to 10000000, or left out.")
        return None
    return value


def _refuse(
    session: Session, events: EventPublisher, backfill_id: Any, errors: list[str], now: datetime, *, chunk_index: int | None = None
) -> None:
    """Publish a ``backfill.refused`` event and flush: what each refusing path ends with."""
    event: dict[str, Any] = {
        "type": EVENT_BACKFILL_REFUSED,
        "backfill_id": printable_id(backfill_id, BACKFILL_ID_MAX),
        "reason_code": "personio-sync.invalid-request",
        "errors": errors,
        "at": now.isoformat(),
    }
    if chunk_index is not None:
        event["chunk_index"] = chunk_index
    events.publish(event)
    session.flush()


def candidate_entry_size(entry: Any) -> int:
    """Bytes of one candidate entry as JSON (how a chunk's size is measured)."""
    return len(json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass"))


def chunk_problem(candidates: Any) -> str | None:
    """Why a chunk's ``candidates`` cannot be taken (field and fix), or None."""
    if not isinstance(candidates, list):
        return "candidates: must be a list of candidates (or of {\"request_id\", \"candidate\"} objects)."
    if len(candidates) > CHUNK_MAX_CANDIDATES:
        return (
            f"candidates: a chunk holds at most {CHUNK_MAX_CANDIDATES} candidates, this one has {len(candidates)}; "
            "split it into more chunks (each with its own chunk_index)."
        )
    size = sum(candidate_entry_size(entry) for entry in candidates)
    if size > CHUNK_MAX_BYTES:
        return (
            f"candidates: a chunk holds at most {CHUNK_MAX_BYTES} bytes of JSON, this one has {size}; "
            "send fewer candidates per chunk, or documents by url instead of inline."
        )
    return None


# ------------------------------------------------------------------ intake


def start_backfill(session: Session, payload: Any, *, events: EventPublisher, now: datetime) -> Backfill | None:
    """Open the backfill record (idempotent: a repeated start returns the existing record).

    ``payload``: ``{"backfill_id", "account_id", "project_id", "expected_total"?}``. An unusable
    start is published as a ``backfill.refused`` event and returns None.
    """
    if not isinstance(payload, dict):
        _refuse(session, events, None, ["backfill: must be an object with backfill_id, account_id and project_id."], now)
        return None
    errors: list[str] = []
    backfill_id = _payload_backfill_id(payload, errors)
    account_id = _plain_text_id(payload, "account_id", errors)
    project_id = _plain_text_id(payload, "project_id", errors)
    expected_total = _count(payload, "expected_total", errors)
    if errors or backfill_id is None or account_id is None or project_id is None:
        _refuse(session, events, payload.get("backfill_id"), errors, now)
        return None
    existing = session.get(Backfill, backfill_id)
    if existing is not None:
        if expected_total is not None and existing.expected_total is None:
            existing.expected_total = expected_total
        session.flush()
        return existing
    backfill = _new_backfill(
        session, backfill_id, BackfillKind.INTAKE, account_id=account_id, project_id=project_id, expected_total=expected_total, now=now
    )
    log.info("backfill %s started (account %s, expected %s)", backfill_id, account_id, expected_total)
    return backfill


def _new_backfill(
    session: Session,
    backfill_id: str,
    kind: BackfillKind,
    *,
    account_id: str,
    project_id: str | None,
    now: datetime,
    expected_total: int | None = None,
) -> Backfill:
    """Add and flush a running, empty backfill record (bound to the account's connection, if any)."""
    connection = session.scalar(select(Connection).where(Connection.account_id == account_id))
    backfill = Backfill(
        id=backfill_id,
        kind=kind,
        account_id=account_id,
        project_id=project_id,
        connection_id=connection.id if connection else None,
        expected_total=expected_total,
        sealed=False,
        state=BackfillState.RUNNING,
        recorded=0,
        refused_chunks=0,
        skipped=0,
        progress_published_done=0,
        created_at=now,
    )
    session.add(backfill)
    session.flush()
    return backfill


def add_to_backfill(session: Session, payload: Any, *, policy: IntakePolicy, events: EventPublisher, now: datetime) -> ChunkResult | None:
    """Record one chunk: ``{"backfill_id", "chunk_index", "candidates": [...]}``.

    Raises :class:`BackfillNotStarted` when the backfill is unknown (the task retries: its
    ``start_backfill`` may still be on its way). A chunk seen before records nothing.
    """
    if not isinstance(payload, dict):
        _refuse(session, events, None, ["chunk: must be an object with backfill_id, chunk_index and candidates."], now)
        return None
    errors: list[str] = []
    backfill_id = _payload_backfill_id(payload, errors)
    index = payload.get("chunk_index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 1_000_000:
        errors.append("chunk_index: must be a whole number from 0 to 1000000, unique per chunk of the backfill.")
    unknown = sorted(str(key)[:64] for key in payload if key not in ("backfill_id", "chunk_index", "candidates"))
    if unknown:
        errors.append(f"chunk: unknown field(s) {', '.join(k for k in unknown if printable_id(k))}; a chunk has backfill_id, chunk_index and candidates.")
    if errors or backfill_id is None or not isinstance(index, int):
        _refuse(session, events, payload.get("backfill_id"), errors, now, chunk_index=index if isinstance(index, int) else None)
        return None
    backfill = session.get(Backfill, backfill_id)
    if backfill is None:
        raise BackfillNotStarted(backfill_id)
    seen = session.scalar(select(BackfillChunk).where(BackfillChunk.backfill_id == backfill_id, BackfillChunk.chunk_index == index))
    if seen is not None:
        log.info("backfill %s chunk %d already recorded (duplicate delivery); nothing to do", backfill_id, index)
        return ChunkResult(backfill_id, index, 0, True, backfill.connection_id, seen.refused)
    candidates = payload.get("candidates")
    problem = chunk_problem(candidates)
    if problem is None and backfill.state == BackfillState.CANCELLED:
        problem = "backfill: was cancelled; start a new backfill (with a new backfill_id) to send these candidates."
    if problem is not None or not isinstance(candidates, list):
        problem = problem or "candidates: must be a list."
        session.add(BackfillChunk(backfill_id=backfill_id, chunk_index=index, candidates=0, recorded=0, refused=problem[:255], received_at=now))
        backfill.refused_chunks += 1
        _refuse(session, events, backfill_id, [problem], now, chunk_index=index)
        log.warning("backfill %s chunk %d refused: %s", backfill_id, index, problem)
        return ChunkResult(backfill_id, index, 0, False, backfill.connection_id, problem)
    recorded = _record_candidates(
        session, backfill, ((f"{backfill_id}:{index}:{position}", entry) for position, entry in enumerate(candidates)), policy=policy, events=events, now=now
    )
    session.add(BackfillChunk(backfill_id=backfill_id, chunk_index=index, candidates=len(candidates), recorded=recorded, received_at=now))
    backfill.recorded += recorded
    if backfill.state == BackfillState.FINISHED:  # more candidates after it looked done
        backfill.state = BackfillState.RUNNING
        backfill.finished_at = None
    session.flush()
    log.info("backfill %s chunk %d: %d of %d candidates recorded", backfill_id, index, recorded, len(candidates))
    return ChunkResult(backfill_id, index, recorded, False, backfill.connection_id)


def _record_candidates(
    session: Session, backfill: Backfill, entries: Iterable[tuple[str, Any]], *, policy: IntakePolicy, events: EventPublisher, now: datetime
) -> int:
    """Record a chunk's candidates as backfill uploads; returns how many were new.

    The same outcome as ``receive_upload`` for each, in bulk: one query for the request_ids
    already recorded, one SAVEPOINT and batched INSERTs for the valid new ones (a SAVEPOINT per
    candidate made a 100,000-candidate backfill take minutes). Invalid candidates, and the
    whole chunk when a concurrent delivery raced it, go through ``receive_upload`` one by one.
    """
    requests = [
        {
            "request_id": entry.get("request_id", default_request_id) if own else default_request_id,
            "account_id": backfill.account_id,
            "project_id": backfill.project_id,
            "priority": Priority.BACKFILL.value,
            "candidate": entry.get("candidate") if own else entry,
        }
        for default_request_id, entry in entries
        for own in [isinstance(entry, dict) and "candidate" in entry]
    ]
    ids = [request["request_id"] for request in requests if isinstance(request["request_id"], str)]
    known: set[str] = set()
    for start in range(0, len(ids), 500):
        known.update(session.scalars(select(Upload.request_id).where(Upload.request_id.in_(ids[start:start + 500]))))
    connection = session.scalar(select(Connection).where(Connection.account_id == backfill.account_id))
    if connection is not None and backfill.connection_id is None:
        backfill.connection_id = connection.id  # connected after the backfill started
    valid: list[dict[str, Any]] = []
    one_by_one: list[dict[str, Any]] = []
    for request in requests:
        if request["request_id"] in known:
            continue
        try:
            loaded = load_upload_request(request, policy)
        except Exception:  # invalid (or a validation bug): recorded with its reasons by receive_upload
            one_by_one.append(request)
            continue
        known.add(loaded["request_id"])
        valid.append(loaded)
    recorded = 0
    if valid:
        uploads = [new_upload(request, connection, now=now, backfill_id=backfill.id) for request in valid]
        try:
            with session.begin_nested():  # one SAVEPOINT for the chunk; the caller commits (see services)
                _insert_uploads(session, uploads)
                for upload in uploads:
                    if upload.is_terminal:
                        events.publish(outcome_event(upload))  # commits with the upload (outbox)
            recorded += len(uploads)
        except IntegrityError:
            # Another delivery recorded some of these meanwhile: settle each in its own SAVEPOINT.
            log.info("backfill %s: a concurrent delivery raced this chunk; recording one by one", backfill.id)
            one_by_one = valid + one_by_one
    for request in one_by_one:
        recorded += int(receive_upload(session, request, policy=policy, events=events, now=now, backfill_id=backfill.id).created)
    return recorded


def _row(row_object: Any, table: FromClause, **values: Any) -> dict[str, Any]:
    """The INSERT parameters of a transient ORM object: its attributes, column defaults where unset."""
    row: dict[str, Any] = {}
    for column in cast("Table", table).columns:
        if column.primary_key:
            continue
        value = values[column.key] if column.key in values else getattr(row_object, column.key)
        default = column.default
        if value is None and isinstance(default, ColumnDefault):
            value = default.arg(None) if default.is_callable else default.arg
        row[column.key] = value
    return row


def _insert_uploads(session: Session, uploads: list[Upload]) -> None:
    """INSERT the uploads with their documents and first history rows as three executemany statements.

    The ORM inserts rows one by one on SQLite (it needs each new id back, in order); here the
    ids come from one SELECT by request_id, which is unique.
    """
    session.execute(insert(Upload), [_row(upload, Upload.__table__) for upload in uploads])
    ids = dict(session.execute(select(Upload.request_id, Upload.id).where(Upload.request_id.in_([u.request_id for u in uploads]))).tuples().all())
    events = [_row(event, UploadEvent.__table__, upload_id=ids[upload.request_id]) for upload in uploads for event in upload.events]
    documents = [_row(document, UploadDocument.__table__, upload_id=ids[upload.request_id]) for upload in uploads for document in upload.documents]
    if events:
        session.execute(insert(UploadEvent), events)
    if documents:
        session.execute(insert(UploadDocument), documents)


def seal_backfill(session: Session, payload: Any, *, events: EventPublisher, now: datetime) -> Backfill | None:
    """Mark the set complete: ``{"backfill_id", "chunk_count"?}``. Raises BackfillNotStarted."""
    if not isinstance(payload, dict) or valid_backfill_id(payload.get("backfill_id")) is None:
        raw = payload.get("backfill_id") if isinstance(payload, dict) else None
        _refuse(session, events, raw, [_backfill_id_error(raw)], now)
        return None
    errors: list[str] = []
    chunk_count = _count(payload, "chunk_count", errors)
    if errors:
        _refuse(session, events, payload["backfill_id"], errors, now)
        return None
    backfill = session.get(Backfill, payload["backfill_id"])
    if backfill is None:
        raise BackfillNotStarted(payload["backfill_id"])
    backfill.sealed = True
    if chunk_count is not None:
        backfill.chunk_count = chunk_count
    session.flush()
    return backfill


def record_backfill(session: Session, backfill: Any, *, policy: IntakePolicy, events: EventPublisher, now: datetime) -> set[int]:
    """The single-message form (before chunks): start, one chunk of every candidate, seal.

    Kept for producers not yet sending chunks. Each candidate's ``request_id`` stays
    ``{backfill_id}:{index}`` as it always was, so a re-sent message records nothing twice.
    """
    if not isinstance(backfill, dict) or not isinstance(backfill.get("candidates") or [], list):
        # Nothing to record per candidate: say so on the stream instead of failing the task.
        events.publish({"type": "upload.invalid", "outcome": "rejected", "reason_code": "personio-sync.invalid-request",
                        "errors": ["backfill: must be an object whose candidates field is a list of candidates."], "at": now.isoformat()})
        session.flush()
        return set()
    header = {key: backfill.get(key) for key in ("backfill_id", "account_id", "project_id")}
    record = start_backfill(session, {**header, "expected_total": len(backfill.get("candidates") or [])}, events=events, now=now)
    if record is None:
        return set()
    recorded = _record_candidates(
        session, record, ((f"{record.id}:{index}", entry) for index, entry in enumerate(backfill.get("candidates") or [])),
        policy=policy, events=events, now=now,
    )
    record.recorded += recorded
    record.sealed = True
    session.flush()
    return {record.connection_id} if recorded and record.connection_id is not None else set()


# ------------------------------------------------------------------ steering


def started_clause() -> ColumnElement[bool]:
    """SQL: the upload has begun at Personio (a document uploaded, or an application posted)."""
    return or_(
        Upload.application_unconfirmed.is_(True),
        Upload.application_attempts > 0,
        exists(select(UploadDocument.id).where(UploadDocument.upload_id == Upload.id, UploadDocument.personio_uuid.is_not(None))),
    )


def upload_started(upload: Upload) -> bool:
    """Python twin of :func:`started_clause` for a loaded upload."""
    return upload.application_unconfirmed or upload.application_attempts > 0 or any(d.personio_uuid for d in upload.documents)


def backfill_gate(session: Session, upload: Upload) -> BackfillState | None:
    """The state of the upload's backfill when it stops the upload from starting, else None.

    Asked by the upload step before it spends anything: a claimed upload of a backfill that
    was paused or cancelled meanwhile does not start; one already half-sent finishes.
    """
    if upload.backfill_id is None:
        return None
    state = session.scalar(select(Backfill.state).where(Backfill.id == upload.backfill_id))
    if state not in (BackfillState.PAUSED, BackfillState.CANCELLED) or upload_started(upload):
        return None
    return state


class BackfillStateError(ValueError):
    """The backfill cannot do that in its current state (the message says why and what to do)."""


def pause_backfill(session: Session, backfill_id: str, *, now: datetime) -> Backfill | None:
    return _switch_state(session, backfill_id, BackfillState.RUNNING, BackfillState.PAUSED, paused_at=now, refusal="only a running backfill can be paused.")


def resume_backfill(session: Session, backfill_id: str, *, now: datetime) -> Backfill | None:
    return _switch_state(session, backfill_id, BackfillState.PAUSED, BackfillState.RUNNING, paused_at=None, refusal="only a paused backfill can be resumed.")


def _switch_state(
    session: Session, backfill_id: str, source: BackfillState, target: BackfillState, *, paused_at: datetime | None, refusal: str
) -> Backfill | None:
    """Move ``source`` -> ``target`` (idempotent when already ``target``); None for an unknown backfill."""
    backfill = session.get(Backfill, backfill_id)
    if backfill is None:
        return None
    if backfill.state == source:
        backfill.state = target
        backfill.paused_at = paused_at
    elif backfill.state != target:
        raise BackfillStateError(f"backfill {backfill_id} is {backfill.state.value}; {refusal}")
    session.flush()
    return backfill


def cancel_backfill(session: Session, backfill_id: str, *, events: EventPublisher, now: datetime, batch: int = 500) -> tuple[Backfill | None, int, bool]:
    """Cancel: end up to ``batch`` not-yet-started uploads ``cancelled``; returns (record, ended, more left).

    Call again (a new transaction each time) while ``more`` is true. Uploads already sending
    are left to their step: it ends them ``cancelled`` if they had not started, or finishes
    them (no orphan document at Personio). Uploads outside the backfill are never touched.
    """
    backfill = session.get(Backfill, backfill_id)
    if backfill is None:
        return None, 0, False
    if backfill.state == BackfillState.FINISHED:
        raise BackfillStateError(f"backfill {backfill_id} has finished; there is nothing left to cancel.")
    backfill.state = BackfillState.CANCELLED
    uploads = session.scalars(
        select(Upload)
        .where(Upload.backfill_id == backfill_id, Upload.state.in_((UploadState.QUEUED, UploadState.HELD)), ~started_clause())
        .order_by(Upload.id)
        .limit(batch + 1)
    ).all()
    for upload in uploads[:batch]:
        cancel_upload(upload, events=events, now=now)
    session.flush()
    return backfill, min(len(uploads), batch), len(uploads) > batch


def cancel_upload(upload: Upload, *, events: EventPublisher, now: datetime) -> None:
    finish(upload, UploadState.CANCELLED, now, reason_code=CANCEL_REASON)
    events.publish(outcome_event(upload))  # commits with the outcome (outbox)


# ------------------------------------------------------------------ reading


def _state_counts(session: Session, backfill_ids: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {backfill_id: dict.fromkeys(_STATE_ORDER, 0) for backfill_id in backfill_ids}
    if not backfill_ids:
        return counts
    rows = session.execute(
        select(Upload.backfill_id, Upload.state, func.count()).where(Upload.backfill_id.in_(backfill_ids)).group_by(Upload.backfill_id, Upload.state)
    ).tuples()
    for backfill_id, state, number in rows:
        if backfill_id is not None:
            counts[backfill_id][UploadState(state).value] = int(number)
    return counts


def _remaining_requests(session: Session, backfill_ids: list[str]) -> dict[str, int]:
    """Personio requests each backfill still needs: one application per open upload, plus its unsent documents."""
    open_states = [state for state in UploadState if state not in TERMINAL_STATES]
    applications = dict(
        session.execute(
            select(Upload.backfill_id, func.count()).where(Upload.backfill_id.in_(backfill_ids), Upload.state.in_(open_states)).group_by(Upload.backfill_id)
        ).tuples().all()
    )
    documents = dict(
        session.execute(
            select(Upload.backfill_id, func.count())
            .join(UploadDocument, UploadDocument.upload_id == Upload.id)
            .where(Upload.backfill_id.in_(backfill_ids), Upload.state.in_(open_states), UploadDocument.personio_uuid.is_(None))
            .group_by(Upload.backfill_id)
        ).tuples().all()
    )
    return {backfill_id: int(applications.get(backfill_id, 0)) + int(documents.get(backfill_id, 0)) for backfill_id in backfill_ids}


def _eta_seconds(session: Session, backfill: Backfill, remaining: dict[str, int], budget: CompanyBudget) -> float | None:
    """Seconds until the backfill is done at the company's budget, sharing it round-robin.

    Running backfills of the same company take turns, so until this one is done each of the
    others sends about as much as it does (or all it has left, if less).
    """
    if backfill.state != BackfillState.RUNNING or budget.per_second <= 0:
        return None
    own = remaining.get(backfill.id, 0)
    if own == 0:
        return 0.0
    others = [
        backfill_id
        for backfill_id in session.scalars(
            select(Backfill.id).where(
                Backfill.connection_id == backfill.connection_id, Backfill.state == BackfillState.RUNNING, Backfill.id != backfill.id
            )
        )
    ] if backfill.connection_id is not None else []
    if others:
        remaining = {**remaining, **_remaining_requests(session, others)}
    shared = sum(min(remaining.get(other, 0), own) for other in others)
    return (own + shared) / budget.per_second


def backfill_status(session: Session, backfill_id: str, *, budget: CompanyBudget, now: datetime) -> dict[str, Any] | None:
    """Everything an operator or the main app may see about one backfill (ids and counts only)."""
    backfill = session.get(Backfill, backfill_id)
    if backfill is None:
        return None
    return _describe(session, backfill, budget=budget, now=now)


def list_backfills(session: Session, account_id: str, *, budget: CompanyBudget, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
    backfills = session.scalars(
        select(Backfill).where(Backfill.account_id == account_id).order_by(Backfill.created_at.desc(), Backfill.id).limit(limit)
    ).all()
    return [_describe(session, backfill, budget=budget, now=now) for backfill in backfills]


def _describe(session: Session, backfill: Backfill, *, budget: CompanyBudget, now: datetime) -> dict[str, Any]:
    counts = _state_counts(session, [backfill.id])[backfill.id]
    total = sum(counts.values())
    done = sum(counts[state.value] for state in TERMINAL_STATES)
    remaining_requests = _remaining_requests(session, [backfill.id])
    recent = session.scalar(
        select(func.count()).select_from(Upload).where(Upload.backfill_id == backfill.id, Upload.finished_at >= now - RATE_WINDOW)
    ) or 0
    window_start = max(now - RATE_WINDOW, backfill.started_at or backfill.created_at)
    minutes = max((now - window_start).total_seconds() / 60, 1 / 60)
    eta = _eta_seconds(session, backfill, remaining_requests, budget)
    chunks = session.execute(
        select(func.count(), func.coalesce(func.sum(BackfillChunk.candidates), 0)).where(BackfillChunk.backfill_id == backfill.id)
    ).one()
    missing: list[int] = []
    if backfill.chunk_count is not None and chunks[0] < backfill.chunk_count:
        have = set(session.scalars(select(BackfillChunk.chunk_index).where(BackfillChunk.backfill_id == backfill.id)))
        missing = [index for index in range(backfill.chunk_count) if index not in have][:100]
    return {
        "backfill_id": backfill.id,
        "kind": backfill.kind.value,
        "account_id": backfill.account_id,
        "project_id": backfill.project_id,
        "state": backfill.state.value,
        "sealed": backfill.sealed,
        "expected_total": backfill.expected_total,
        "chunks_received": int(chunks[0]),
        "candidates_received": int(chunks[1]),
        "chunk_count": backfill.chunk_count,
        "missing_chunks": missing,
        "refused_chunks": backfill.refused_chunks,
        "skipped_already_in_personio": backfill.skipped,
        "total": total,
        "done": done,
        "remaining": total - done,
        "counts": counts,
        "remaining_requests": remaining_requests[backfill.id],
        "rate_per_minute": round(recent / minutes, 2) if backfill.started_at else 0.0,
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "eta_at": (now + timedelta(seconds=eta)).isoformat() if eta is not None else None,
        "created_at": backfill.created_at.isoformat(),
        "started_at": backfill.started_at.isoformat() if backfill.started_at else None,
        "paused_at": backfill.paused_at.isoformat() if backfill.paused_at else None,
        "finished_at": backfill.finished_at.isoformat() if backfill.finished_at else None,
    }


# ------------------------------------------------------------------ progress events


def publish_progress(session: Session, *, events: EventPublisher, now: datetime, interval: float) -> int:
    """One pass over the open backfills: throttled progress events, completion, and its event.

    A progress event goes out for a backfill at most every ``interval`` seconds and only when
    its finished count moved. A backfill is finished when every upload is terminal and the set
    is complete (sealed, or as many candidates received as ``expected_total``); a cancelled one
    when nothing of it is open any more. Returns how many events were published.
    """
    open_backfills = session.scalars(
        select(Backfill).where(or_(Backfill.state.in_((BackfillState.RUNNING, BackfillState.PAUSED)), and_(Backfill.state == BackfillState.CANCELLED, Backfill.finished_at.is_(None))))
    ).all()
    for backfill in open_backfills:
        if backfill.state == BackfillState.CANCELLED:
            # An upload that was in flight at the cancel and came back unstarted (its lease
            # expired, a worker died) ends here, so a cancelled backfill always comes to an end.
            cancel_backfill(session, backfill.id, events=events, now=now)
    counts = _state_counts(session, [backfill.id for backfill in open_backfills])
    published = 0
    for backfill in open_backfills:
        states = counts[backfill.id]
        total = sum(states.values())
        done = sum(states[state.value] for state in TERMINAL_STATES)
        event: dict[str, Any] = {"backfill_id": backfill.id, "account_id": backfill.account_id, "project_id": backfill.project_id,
                                 "total": total, "counts": {k: v for k, v in states.items() if v}, "at": now.isoformat()}
        if done == total and _complete(session, backfill):
            if backfill.state != BackfillState.CANCELLED:
                backfill.state = BackfillState.FINISHED
            backfill.finished_at = now
            events.publish({**event, "type": EVENT_BACKFILL_FINISHED, "state": backfill.state.value})
            published += 1
            log.info("backfill %s finished (%s): %s", backfill.id, backfill.state.value, event["counts"])
            continue
        due = backfill.progress_published_at is None or (now - backfill.progress_published_at).total_seconds() >= interval
        if due and done != backfill.progress_published_done:
            backfill.progress_published_at = now
            backfill.progress_published_done = done
            events.publish({**event, "type": EVENT_BACKFILL_PROGRESS, "state": backfill.state.value})
            published += 1
    session.flush()
    return published


def _complete(session: Session, backfill: Backfill) -> bool:
    if backfill.state == BackfillState.CANCELLED or backfill.sealed:
        return True
    if backfill.expected_total is None:
        return False
    received = session.scalar(select(func.coalesce(func.sum(BackfillChunk.candidates), 0)).where(BackfillChunk.backfill_id == backfill.id)) or 0
    return int(received) >= backfill.expected_total


# ------------------------------------------------------------------ dispatch bookkeeping


def mark_dispatched(session: Session, served: list[str], now: datetime) -> None:
    """Record the turn order after a dispatch: the backfill served first gets the earliest time."""
    for position, backfill_id in enumerate(served):
        at = now + timedelta(microseconds=position)
        session.execute(
            update(Backfill)
            .where(Backfill.id == backfill_id)
            .values(last_dispatched_at=at, started_at=func.coalesce(Backfill.started_at, at))
            .execution_options(synchronize_session=False)
        )


# ------------------------------------------------------------------ re-drive

REDRIVE_OUTCOMES = (UploadState.FAILED, UploadState.REJECTED, UploadState.HELD)


@dataclass(frozen=True)
class RedriveFilter:
    account_id: str
    outcome: UploadState
    reason_code: str | None = None
    project_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def redrive_uploads(
    session: Session, selection: RedriveFilter, *, now: datetime, backfill_id: str | None = None, batch: int = 1000
) -> tuple[Backfill, int, bool]:
    """Make (or continue) a backfill of existing uploads and queue up to ``batch`` of them again.

    Returns (record, queued now, more left): call again with the same ``backfill_id`` while
    ``more``, each call one transaction. A re-queued upload keeps its ``request_id`` (the main
    app gets a new ``upload.finished`` for it) and its uploaded documents; its job is resolved
    again from the project's current link, so ``job-not-published`` rejections go to the new
    job. An upload whose candidate is already in Personio for that job (the application claim
    of a submitted upload) is left as it is and counted as skipped.
    """
    if selection.outcome not in REDRIVE_OUTCOMES:
        raise BackfillStateError(f"outcome: re-drive takes failed, rejected or held, not {selection.outcome.value}.")
    backfill = session.get(Backfill, backfill_id) if backfill_id else None
    if backfill is None:
        backfill = _new_backfill(
            session, backfill_id or f"redrive-{uuid.uuid4()}", BackfillKind.REDRIVE, account_id=selection.account_id, project_id=selection.project_id, now=now
        )
    conditions = _redrive_conditions(selection) + [or_(Upload.backfill_id.is_(None), Upload.backfill_id != backfill.id), ~_documents_gone()]
    uploads = session.scalars(select(Upload).where(*conditions).order_by(Upload.id).limit(batch + 1)).all()
    queued = 0
    for upload in uploads[:batch]:
        if _already_in_personio(session, upload):
            backfill.skipped += 1
            # Still counted as the backfill's (terminal), so its report adds up; never sent again.
            upload.backfill_id = backfill.id
            continue
        upload.backfill_id = backfill.id
        upload.priority = Priority.BACKFILL
        upload.attempts = 0
        upload.reason_code = None
        upload.error_field = None
        upload.personio_status = None
        upload.message_en = None
        upload.message_de = None
        upload.finished_at = None
        upload.lease_token = None
        upload.lease_until = None
        upload.next_attempt_at = now
        transition(upload, UploadState.QUEUED, now, reason_code="re-driven", detail=backfill.id)
        queued += 1
    backfill.recorded += queued
    more = len(uploads) > batch
    if not more:
        backfill.sealed = True
    session.flush()
    return backfill, queued, more


def _redrive_conditions(selection: RedriveFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        Upload.account_id == selection.account_id,
        Upload.state == selection.outcome,
        Upload.purged_at.is_(None),  # the retention purge left no candidate to send (services.retention)
    ]
    if selection.reason_code:
        conditions.append(Upload.reason_code == selection.reason_code)
    if selection.project_id:
        conditions.append(Upload.project_id == selection.project_id)
    moment = Upload.updated_at if selection.outcome == UploadState.HELD else Upload.finished_at
    if selection.since:
        conditions.append(moment >= selection.since)
    if selection.until:
        conditions.append(moment < selection.until)
    return conditions


def _documents_gone() -> ColumnElement[bool]:
    """SQL: an inline document neither at Personio nor kept any more (its bytes end with the upload)."""
    return exists(
        select(UploadDocument.id).where(
            UploadDocument.upload_id == Upload.id,
            UploadDocument.personio_uuid.is_(None),
            UploadDocument.source == DocumentSource.INLINE,
            UploadDocument.content.is_(None),
        )
    )


def count_unsendable(session: Session, selection: RedriveFilter) -> int:
    """Uploads the filter matches that cannot be re-driven: an inline document's bytes are gone.

    Their document was not uploaded and its bytes are not kept after an outcome; the main app
    sends such candidates again as new uploads.
    """
    return session.scalar(select(func.count()).select_from(Upload).where(*_redrive_conditions(selection), _documents_gone())) or 0


def _already_in_personio(session: Session, upload: Upload) -> bool:
    """The candidate already has an application for the job this upload would go to now."""
    if upload.connection_id is None or not upload.email_normalized:
        return False
    job_id = session.scalar(
        select(ProjectLink.job_position_id).where(ProjectLink.connection_id == upload.connection_id, ProjectLink.project_id == upload.project_id)
    )
    if job_id is None:
        return False
    owner_state = session.scalar(
        select(Upload.state)
        .join(ApplicationClaim, ApplicationClaim.upload_id == Upload.id)
        .where(
            ApplicationClaim.connection_id == upload.connection_id,
            ApplicationClaim.job_position_id == job_id,
            ApplicationClaim.email_normalized == upload.email_normalized,
        )
    )
    return owner_state in (UploadState.SUBMITTED, UploadState.ALREADY_IN_PERSONIO)


# ------------------------------------------------------------------ dispatch order


def backfill_turns(session: Session, connection_id: int, wanted: int, now: datetime) -> tuple[list[int], list[str]]:
    """Which backfill uploads of a company start next: (upload ids, the backfills they belong to, in order).

    First the half-sent uploads of paused or cancelled backfills (they finish; nothing else of
    those backfills starts). Then the running backfills take turns, one upload each, the one
    served longest ago first (``last_dispatched_at``), so several backfills share the company's
    budget round-robin instead of first-come-first-served; backfill uploads sent without a
    backfill record take their turn as one more backfill. Within one backfill the oldest due
    upload goes first (a parked half-sent upload keeps its place).
    """
    picked: list[int] = []
    served: list[str] = []
    stopped = session.scalars(
        select(Backfill.id).where(Backfill.connection_id == connection_id, Backfill.state.in_((BackfillState.PAUSED, BackfillState.CANCELLED)))
    ).all()
    if stopped:
        picked += session.scalars(
            due_uploads(connection_id, Priority.BACKFILL, now).where(Upload.backfill_id.in_(stopped), started_clause()).limit(wanted)
        ).all()
    running = session.execute(
        select(Backfill.id, Backfill.last_dispatched_at)
        .where(Backfill.connection_id == connection_id, Backfill.state == BackfillState.RUNNING)
        .order_by(Backfill.last_dispatched_at.asc().nulls_first(), Backfill.created_at, Backfill.id)
    ).tuples().all()
    need = wanted - len(picked)
    if need <= 0:
        return picked, served
    queues: list[tuple[str | None, list[int]]] = []
    for backfill_id, _ in running:
        due = session.scalars(due_uploads(connection_id, Priority.BACKFILL, now).where(Upload.backfill_id == backfill_id).limit(need)).all()
        if due:
            queues.append((backfill_id, list(due)))
    loose = session.scalars(due_uploads(connection_id, Priority.BACKFILL, now).where(Upload.backfill_id.is_(None)).limit(need)).all()
    if loose:
        # Their last turn: the newest claim among them still in flight (none: they go first).
        last_turn = session.scalar(
            select(func.max(Upload.updated_at)).where(
                Upload.state == UploadState.SENDING,
                Upload.connection_id == connection_id,
                Upload.priority == Priority.BACKFILL,
                Upload.backfill_id.is_(None),
            )
        )
        turns: dict[str | None, datetime | None] = {backfill_id: at for backfill_id, at in running}
        position = 0
        if last_turn is not None:
            while position < len(queues) and (turns.get(queues[position][0]) or last_turn) <= last_turn:
                position += 1
        queues.insert(position, (None, list(loose)))
    while need > 0 and queues:
        for group, due in list(queues):
            if need <= 0:
                break
            picked.append(due.pop(0))
            need -= 1
            if group is not None and group not in served:
                served.append(group)
            if not due:
                queues.remove((group, due))
    return picked, served
