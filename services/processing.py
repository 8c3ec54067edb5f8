"""Sending one upload to Personio: documents first, then the application.

``process_upload`` runs one *step* for an upload that a dispatcher claimed under a lease.
The step goes as far as the company's rate budget allows and commits after every
Personio answer (a recovery point), so a retry resumes where the last one stopped and
never uploads a stored document twice. When the budget is spent the upload is parked
in the database (``queued`` with ``next_attempt_at``) and the worker slot is freed: no
worker ever sleeps waiting for budget (beyond a moment, ``policy.short_budget_wait``).

Crash safety for the application POST, which Personio cannot deduplicate by key:
``application_unconfirmed`` is committed *before* the POST and cleared by a definite
answer. If a later attempt is told ``applicant-already-exists`` while the flag is still
set from an earlier attempt, the earlier POST created it: the upload is ``submitted``.

Fencing: a step first swaps the claim's lease token for one of its own, so a second delivery
of the same message (a redelivery after a Redis restart, or a worker whose message came back)
finds the token gone and does nothing. Every commit of the step checks that the token is still
its own, so a step whose lease the reconciler took back stops before its next Personio request
and never overwrites the new owner's state.

Transactions: the upload step is the one service that commits (its recovery points; the rule is
in ``services``), and no transaction stays open across a Personio request or a document
download (``models.db.end_transaction``): on SQLite every transaction holds the write lock.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import mimetypes
import re
import time
import uuid as uuid_module
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import (
    HOLDING_HEALTH,
    ApplicationClaim,
    BackfillState,
    Connection,
    Health,
    Job,
    ProjectLink,
    Upload,
    UploadDocument,
    UploadState,
)
from personio.errors import (
    PersonioAPIError,
    PersonioApplicantExists,
    PersonioChannelNotFound,
    PersonioError,
    PersonioFeatureDisabled,
    PersonioRateLimited,
    PersonioTransportError,
    PersonioUnauthorized,
)
from services.backfill import CANCEL_REASON, backfill_gate
from services.connections import health_message, record_channel_invalid, set_health
from services.context import SyncDeps
from services.documents import DocumentFetchError
from services.health import observe_personio_answered, observe_rate_limited
from services.messages import personio_said, render, render_both, retry_cause
from services.retention import claim_keys
from services.schemas import format_size
from services.uploads import finish, outcome_event, transition

log = logging.getLogger(__name__)


class StepOutcome(enum.StrEnum):
    FINISHED = "finished"  # terminal state reached
    PARKED = "parked"  # back to queued, due at next_attempt_at
    HELD = "held"  # waits for the connection to be fixed
    STALE = "stale"  # not ours (duplicate message, expired lease, already done)


@dataclass(frozen=True)
class StepResult:
    outcome: StepOutcome
    connection_id: int | None
    state: UploadState | None = None
    wake_in: float | None = None  # when the company can take the next request


class _Park(Exception):
    def __init__(self, delay: float, reason: str, *, count_attempt: bool = False, keep_place: bool = False, cause: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
        self.count_attempt = count_attempt
        # What the recruiter is told failed, if this was the last attempt (see retry_cause).
        self.cause = cause if cause is not None else retry_cause(reason)
        # Keep the upload's place in its company's line (its old next_attempt_at): a step
        # that stopped for budget resumes before the backlog starts new uploads, so the
        # company does not pile up half-sent uploads. The budget itself holds it back.
        self.keep_place = keep_place


class _Finish(Exception):
    def __init__(self, state: UploadState, reason_code: str, *, field: str | None = None, status: int | None = None, **params: Any) -> None:
        super().__init__(reason_code)
        self.state = state
        self.reason_code = reason_code
        self.field = field
        self.status = status
        self.params = params


class _Hold(Exception):
    pass


class _Lost(Exception):
    """The upload's lease is no longer this step's: another worker owns it now."""


_STEP_TOKEN = "personio_sync.step_token"  # key in Session.info: the lease token this step holds


def backoff_delay(attempt: int, deps: SyncDeps) -> float:
    """Capped exponential backoff with equal jitter: never zero, never above the cap."""
    policy = deps.policy
    ceiling: float = min(policy.backoff_cap, policy.backoff_base * (2 ** max(attempt - 1, 0)))
    return ceiling / 2 + deps.rng.uniform(0, ceiling / 2)


def process_upload(session: Session, deps: SyncDeps, upload_id: int, lease_token: str) -> StepResult:
    """Run one step for a claimed upload; see the module docstring."""
    step_token = new_lease_token()
    # Session.execute is typed Result for any statement; a DML statement gives a CursorResult.
    taken = cast(
        "CursorResult[Any]",
        session.execute(
            update(Upload)
            .where(Upload.id == upload_id, Upload.state == UploadState.SENDING, Upload.lease_token == lease_token)
            .values(lease_token=step_token, lease_until=deps.clock() + timedelta(seconds=deps.policy.lease))
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    session.commit()
    upload = session.get(Upload, upload_id, populate_existing=True)
    if not taken or upload is None:
        log.info("upload %s: message is stale (state %s); skipped", upload_id, upload.state.value if upload else "missing")
        return StepResult(StepOutcome.STALE, upload.connection_id if upload else None, upload.state if upload else None)
    session.info[_STEP_TOKEN] = step_token
    try:
        return _step(session, deps, upload)
    except _Lost:
        log.warning("upload %s: lease taken back by the reconciler during the step; stopped", upload.request_id)
        return StepResult(StepOutcome.STALE, upload.connection_id, None)
    finally:
        session.info.pop(_STEP_TOKEN, None)


def _ensure_ours(session: Session, upload: Upload) -> None:
    """Lock the upload's row and check its lease is still this step's; else roll back (raises _Lost).

    Called before the step changes the lease itself (finish, park, hold), because a flush of
    those changes would hide whose the row was. The row stays locked until the commit (FOR
    UPDATE on PostgreSQL; SQLite's write lock is held from the transaction's start).
    """
    with session.no_autoflush:
        current = session.execute(select(Upload.lease_token).where(Upload.id == upload.id).with_for_update()).scalar_one_or_none()
    if current is None or current != session.info.get(_STEP_TOKEN):
        session.rollback()
        raise _Lost()


def _commit(session: Session, upload: Upload) -> None:
    """Commit the step's progress if the upload is still this step's."""
    _ensure_ours(session, upload)
    session.commit()


def _step(session: Session, deps: SyncDeps, upload: Upload) -> StepResult:
    connection = session.get(Connection, upload.connection_id) if upload.connection_id is not None else None
    try:
        if connection is None:
            raise _Finish(UploadState.REJECTED, "personio-sync.connection-not-found", field="account_id")
        if connection.health in HOLDING_HEALTH:
            raise _Hold()
        _check_backfill(session, deps, upload)
        job_id = _resolve_job(session, deps, upload, connection)
        _claim_application(session, deps, upload, connection, job_id)
        _upload_documents(session, deps, upload, connection)
        _create_application(session, deps, upload, connection, job_id)
    except _Finish as done:
        _ensure_ours(session, upload)
        finish(upload, done.state, deps.clock(), reason_code=done.reason_code, field=done.field, status=done.status, **done.params)
        deps.events.publish(outcome_event(upload))  # commits with the outcome (outbox)
        if done.status is not None and connection is not None:
            # Personio answered (not with 429): a run of 429s, if any, is over.
            observe_personio_answered(session, connection, now=deps.clock(), events=deps.events)
        session.commit()
        log.info("upload %s finished: %s (%s)", upload.request_id, upload.state.value, upload.reason_code,
                 extra={"request_id": upload.request_id, "account_id": upload.account_id, "upload_id": upload.id,
                        "outcome": upload.state.value, "reason_code": upload.reason_code})
        return StepResult(StepOutcome.FINISHED, upload.connection_id, upload.state)
    except _Park as park:
        return _park(session, deps, upload, park)
    except _Hold:
        return _hold(session, deps, upload, connection)
    return StepResult(StepOutcome.FINISHED, upload.connection_id, upload.state)


def _park(session: Session, deps: SyncDeps, upload: Upload, park: _Park) -> StepResult:
    _ensure_ours(session, upload)
    now = deps.clock()
    if park.count_attempt:
        upload.attempts += 1
        if upload.attempts >= deps.policy.max_attempts:
            finish(upload, UploadState.FAILED, now, reason_code="personio-sync.retries-exhausted", attempts=upload.attempts, detail=park.reason, cause=park.cause)
            deps.events.publish(outcome_event(upload))  # commits with the outcome (outbox)
            session.commit()
            log.warning("upload %s failed after %d attempts (%s)", upload.request_id, upload.attempts, park.reason)
            return StepResult(StepOutcome.FINISHED, upload.connection_id, upload.state)
    if not park.keep_place:
        upload.next_attempt_at = now + timedelta(seconds=park.delay)
    upload.lease_token = None
    upload.lease_until = None
    transition(upload, UploadState.QUEUED, now, reason_code=park.reason)
    session.commit()
    log.info("upload %s parked for %.2fs: %s", upload.request_id, park.delay, park.reason)
    # An upload that kept its place is due at once: look again a moment early, the step sleeps the
    # rest (policy.short_budget_wait), so its slot is used when it frees.
    wake_in = max(park.delay - deps.policy.short_budget_wait, 0.0) if park.keep_place else park.delay
    return StepResult(StepOutcome.PARKED, upload.connection_id, upload.state, wake_in=wake_in)


def _hold(session: Session, deps: SyncDeps, upload: Upload, connection: Connection | None) -> StepResult:
    _ensure_ours(session, upload)
    now = deps.clock()
    health = connection.health.value if connection else "unknown"
    # "Waiting until …" plus the connection's own explanation, in each language.
    explanation = health_message(connection) if connection else render_both("health.unchecked")
    upload.message_en = render("personio-sync.held", "en", health=explanation["en"])
    upload.message_de = render("personio-sync.held", "de", health=explanation["de"])
    upload.reason_code = f"health.{health}"
    upload.lease_token = None
    upload.lease_until = None
    transition(upload, UploadState.HELD, now, reason_code=f"health.{health}")
    session.commit()
    log.info("upload %s held: connection %s is %s", upload.request_id, upload.connection_id, health)
    return StepResult(StepOutcome.HELD, upload.connection_id, upload.state)


def _check_backfill(session: Session, deps: SyncDeps, upload: Upload) -> None:
    """A claimed upload whose backfill was paused or cancelled meanwhile does not start.

    Paused: back in line (it keeps its place) until the backfill resumes. Cancelled: it ends
    ``cancelled``. An upload that already began at Personio finishes either way, so no
    uploaded document is left without its application.
    """
    gate = backfill_gate(session, upload)
    if gate == BackfillState.CANCELLED:
        raise _Finish(UploadState.CANCELLED, CANCEL_REASON)
    if gate == BackfillState.PAUSED:
        raise _Park(deps.policy.lockout, "backfill paused", keep_place=True)


def _resolve_job(session: Session, deps: SyncDeps, upload: Upload, connection: Connection) -> int:
    link = session.scalar(
        select(ProjectLink).where(ProjectLink.connection_id == connection.id, ProjectLink.project_id == upload.project_id)
    )
    if link is None:
        raise _Finish(UploadState.REJECTED, "personio-sync.project-not-linked", field="project_id")
    upload.job_position_id = link.job_position_id
    if _job_published(session, connection, link.job_position_id):
        return link.job_position_id
    # The cache may be stale: refresh the feed once before deciding.
    if deps.refresh_jobs is not None:
        try:
            deps.refresh_jobs(session, connection)
        except Exception as exc:  # a feed problem must not block an upload Personio may accept
            log.warning("connection %s: feed refresh before upload failed (%s); letting Personio decide", connection.id, type(exc).__name__)
            return link.job_position_id
        if _job_published(session, connection, link.job_position_id):
            return link.job_position_id
        if connection.feed_fetched_at is not None and connection.feed_error is None:
            _flag_link(link, deps.clock())
            raise _Finish(UploadState.REJECTED, "personio-sync.job-not-published", field="project_id")
    return link.job_position_id


def _job_published(session: Session, connection: Connection, job_id: int) -> bool:
    job = session.scalar(select(Job).where(Job.connection_id == connection.id, Job.job_position_id == job_id))
    return job is not None and job.published


def _flag_link(link: ProjectLink, now: datetime) -> None:
    link.flag = "job_not_published"
    link.flagged_at = now


def _claim_application(session: Session, deps: SyncDeps, upload: Upload, connection: Connection, job_id: int) -> None:
    """Make this upload the one that may post (company, job, email); see ApplicationClaim."""
    email = upload.email_normalized or ""
    where = (
        ApplicationClaim.connection_id == connection.id,
        ApplicationClaim.job_position_id == job_id,
        # A claim whose upload was purged holds a digest of the address (services.retention).
        ApplicationClaim.email_normalized.in_(claim_keys(email, deps.email_digests)),
    )
    claim = session.scalar(select(ApplicationClaim).where(*where).order_by(ApplicationClaim.id))
    if claim is None:
        try:
            with session.begin_nested():
                session.add(ApplicationClaim(connection_id=connection.id, job_position_id=job_id, email_normalized=email, upload_id=upload.id))
            _commit(session, upload)
            return
        except IntegrityError:
            claim = session.scalar(select(ApplicationClaim).where(*where))
            if claim is None:
                raise _Park(1.0, "claim race, retrying") from None
    if claim.upload_id == upload.id:
        return
    other = session.get(Upload, claim.upload_id)
    if other is None or other.state in (UploadState.REJECTED, UploadState.FAILED, UploadState.CANCELLED):
        claim.upload_id = upload.id
        _commit(session, upload)
        return
    if other.state in (UploadState.SUBMITTED, UploadState.ALREADY_IN_PERSONIO):
        raise _Finish(UploadState.ALREADY_IN_PERSONIO, "personio-sync.already-sent")
    # The same candidate is on its way to the same job in another upload: wait for its outcome.
    raise _Park(max(deps.policy.lockout / 4, 1.0), "an earlier upload of this candidate for this job is in progress")


def _take_token(deps: SyncDeps, connection: Connection, endpoint: str) -> float:
    """Take a slot of the company's budget or park; returns when (monotonic) the slot was taken."""
    company = str(connection.company_id)
    budget = endpoint if deps.policy.per_endpoint_budget else "recruiting"
    acquisition = deps.limiter.try_acquire(company, budget)
    if not acquisition.granted and not acquisition.locked_out and acquisition.wait <= deps.policy.short_budget_wait:
        # The slot frees in a moment (a wake-up timer fires this much early): waiting here is
        # cheaper than parking and a whole dispatch round trip, which would leave it unused.
        deps.sleep(acquisition.wait)
        acquisition = deps.limiter.try_acquire(company, budget)
    if not acquisition.granted:
        raise _Park(acquisition.wait, "waiting for the company's Personio rate budget", keep_place=not acquisition.locked_out)
    return time.monotonic()


@contextlib.contextmanager
def _answer_time(deps: SyncDeps, connection: Connection, endpoint: str, slot_taken: float) -> Iterator[None]:
    """Report Personio's answer time (slot taken → answer) for the in-flight cap and the limiter's margin.

    A refusal is an answer too; a transport failure (timeout, reset) is not: it would stretch
    the spread by the timeout.
    """
    try:
        yield
    except PersonioTransportError:
        raise
    except PersonioError:
        _record_answer_time(deps, connection, endpoint, slot_taken)
        raise
    _record_answer_time(deps, connection, endpoint, slot_taken)


def _record_answer_time(deps: SyncDeps, connection: Connection, endpoint: str, slot_taken: float) -> None:
    if deps.latency is None:
        return
    try:
        deps.latency.record(str(connection.company_id), endpoint, time.monotonic() - slot_taken)
    except Exception as exc:  # noqa: BLE001 - statistics must never fail an upload
        log.warning("connection %s: answer time not recorded (%s)", connection.id, type(exc).__name__)


def _extend_lease(session: Session, deps: SyncDeps, upload: Upload) -> None:
    upload.lease_until = deps.clock() + timedelta(seconds=deps.policy.lease)
    _commit(session, upload)


def _upload_documents(session: Session, deps: SyncDeps, upload: Upload, connection: Connection) -> None:
    client = None
    for document in upload.documents:
        if document.personio_uuid is not None:
            continue
        content = _document_content(session, deps, document)
        twin = next((d for d in upload.documents if d.personio_uuid and d.sha256 == document.sha256), None)
        if twin is not None:
            # Same bytes twice in one upload: Personio already has them.
            document.personio_uuid = twin.personio_uuid
            document.uploaded_at = deps.clock()
            _commit(session, upload)
            continue
        slot_taken = _take_token(deps, connection, "documents")
        _extend_lease(session, deps, upload)
        client = client or deps.clients(connection)
        mimetype = mimetypes.guess_type(document.filename)[0] or "application/octet-stream"
        try:
            with _answer_time(deps, connection, "documents", slot_taken):
                uploaded = client.upload_document(filename=document.filename, content=content, mimetype=mimetype)
        except PersonioError as error:
            _handle_error(session, deps, upload, connection, error, filename=document.filename, document_field=f"candidate.documents.{document.position}")
        document.personio_uuid = uploaded.uuid
        document.uploaded_at = deps.clock()
        observe_personio_answered(session, connection, now=deps.clock(), events=deps.events)  # a run of 429s is over
        _commit(session, upload)
        log.info("upload %s: document %d uploaded", upload.request_id, document.position)


def _document_content(session: Session, deps: SyncDeps, document: UploadDocument) -> bytes:
    if document.content is not None:
        return document.content
    url = document.url or ""
    # Ends the transaction (no database lock during the download) and covers the download
    # with a fresh lease; the download itself is bounded by its total deadline.
    _extend_lease(session, deps, document.upload)
    try:
        content = deps.fetch_document(url)
    except DocumentFetchError as error:
        if error.permanent:
            raise _Finish(
                UploadState.REJECTED,
                error.code,
                field=f"candidate.documents.{document.position}.url",
                filename=document.filename,
                detail=error.details,
                limit={"en": format_size(deps.policy.url_document_max_bytes), "de": format_size(deps.policy.url_document_max_bytes, "de")},
            ) from None
        raise _Park(
            backoff_delay(document.upload.attempts + 1, deps), f"document download failed ({error.detail})", count_attempt=True,
            cause=retry_cause("personio-sync.document-fetch-failed", filename=document.filename, detail=error.details),
        ) from None
    document.content = content
    document.size = len(content)
    document.sha256 = hashlib.sha256(content).hexdigest()
    _commit(session, document.upload)
    return content


def submission_phase(upload: Upload, link: ProjectLink | None, connection: Connection) -> dict[str, Any] | None:
    """The Personio phase to send: the request's, else the project link's, else the connection's.

    None: no phase is sent, and Personio uses the initial phase of the job's category.
    """
    for phase in (upload.phase, link.phase if link is not None else None, connection.phase):
        if phase:
            return phase
    return None


def build_application(upload: Upload, job_id: int, channel_id: int | None, phase: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of POST /v1/recruiting/applications for this upload."""
    candidate = upload.candidate
    body: dict[str, Any] = {
        "first_name": candidate["first_name"].strip(),
        "last_name": candidate["last_name"].strip(),
        "email": candidate["email"].strip(),
        "job_position_id": job_id,
    }
    if channel_id is not None:
        body["recruiting_channel_id"] = channel_id
    if upload.external_posting_id:
        body["external_posting_id"] = upload.external_posting_id
    if phase is not None:
        body["phase"] = {"type": phase["type"], "id": phase["id"]}
    for key in ("message", "application_date"):
        if candidate.get(key):
            body[key] = candidate[key]
    if candidate.get("tags"):
        body["tags"] = list(candidate["tags"])
    files = [
        {"uuid": d.personio_uuid, "original_filename": d.filename, "category": d.category}
        for d in upload.documents
        if d.personio_uuid is not None
    ]
    if files:
        body["files"] = files
    attributes = [{"id": key, "value": candidate[key]} for key in ("phone", "location") if candidate.get(key)]
    attributes += [{"id": key, "value": value} for key, value in (candidate.get("attributes") or {}).items()]
    if attributes:
        body["attributes"] = attributes
    return body


def _create_application(session: Session, deps: SyncDeps, upload: Upload, connection: Connection, job_id: int) -> None:
    client = deps.clients(connection)
    link = session.scalar(select(ProjectLink).where(ProjectLink.connection_id == connection.id, ProjectLink.project_id == upload.project_id))
    phase = submission_phase(upload, link, connection)
    while True:
        channel_id = connection.channel_id if connection.channel_invalid_at is None else None
        upload.channel_dropped = connection.channel_id is not None and channel_id is None
        slot_taken = _take_token(deps, connection, "applications")
        earlier_unconfirmed = upload.application_unconfirmed
        upload.application_unconfirmed = True
        upload.application_attempts += 1
        _extend_lease(session, deps, upload)
        try:
            with _answer_time(deps, connection, "applications", slot_taken):
                client.create_application(build_application(upload, job_id, channel_id, phase))
        except PersonioApplicantExists:
            upload.application_unconfirmed = False
            if earlier_unconfirmed:
                upload.confirmed_by_duplicate = True
                raise _Finish(UploadState.SUBMITTED, "personio-sync.submitted", status=201) from None
            raise _Finish(UploadState.ALREADY_IN_PERSONIO, "errors.applicant-already-exists", field="email", status=400) from None
        except PersonioChannelNotFound as error:
            if channel_id is None:
                # No channel was sent, so resending the same body cannot help: a refusal.
                _handle_error(session, deps, upload, connection, error, application=True, earlier_unconfirmed=earlier_unconfirmed)
            # Personio only tells a wrong channel now: flag the connection and send the
            # candidate without attribution rather than not at all.
            upload.application_unconfirmed = earlier_unconfirmed
            record_channel_invalid(session, connection, now=deps.clock(), events=deps.events)
            _commit(session, upload)
            continue
        except PersonioError as error:
            _handle_error(session, deps, upload, connection, error, application=True, earlier_unconfirmed=earlier_unconfirmed)
        upload.application_unconfirmed = False  # a 201 is a definite answer
        code = "personio-sync.submitted-without-channel" if upload.channel_dropped else "personio-sync.submitted"
        raise _Finish(UploadState.SUBMITTED, code, status=201)


def _handle_error(
    session: Session,
    deps: SyncDeps,
    upload: Upload,
    connection: Connection,
    error: PersonioError,
    *,
    filename: str | None = None,
    document_field: str | None = None,
    application: bool = False,
    earlier_unconfirmed: bool = False,
) -> NoReturn:
    """Turn a classified Personio error into the upload's next state (always raises)."""
    now = deps.clock()
    definite = (
        isinstance(error, PersonioRateLimited)
        or (isinstance(error, PersonioAPIError) and not error.retryable)
        or (isinstance(error, PersonioTransportError) and not error.maybe_delivered)
    )
    if application and definite:
        # Personio answered and created nothing this time (or never got the request);
        # an earlier unknown attempt stays unknown.
        upload.application_unconfirmed = earlier_unconfirmed
    if isinstance(error, PersonioRateLimited):
        wait = error.retry_after if error.retry_after is not None else deps.policy.lockout
        deps.limiter.lock_out(str(connection.company_id), wait)
        # A long run of 429s changes the health and what waiting uploads say; they keep waiting.
        observe_rate_limited(session, connection, now=now, alert_after=deps.policy.rate_limited_alert_after, events=deps.events)
        raise _Park(wait + deps.rng.uniform(0, max(wait * 0.05, 0.05)), "Personio answered 429; company locked out")
    if isinstance(error, (PersonioUnauthorized, PersonioFeatureDisabled)):
        connection.rate_limited_since = None  # Personio answered: a run of 429s is over (refusals: see _step)
    if isinstance(error, PersonioUnauthorized):
        set_health(session, connection, Health.INVALID_CREDENTIALS, error.reason_code, now=now, events=deps.events)
        raise _Hold()
    if isinstance(error, PersonioFeatureDisabled):
        set_health(session, connection, Health.RECRUITING_DISABLED, error.reason_code, now=now, events=deps.events)
        raise _Hold()
    if error.retryable:
        raise _Park(backoff_delay(upload.attempts + 1, deps), error.reason_code, count_attempt=True)
    code = error.reason_code
    if code == "errors.file-validation.file-not-exists" and not any(event.reason_code == code for event in upload.events):
        # An uploaded document expired at Personio: upload the documents again, once. If
        # Personio still misses them after that, resending cannot help: a refusal.
        for document in upload.documents:
            document.personio_uuid = None
        raise _Park(backoff_delay(upload.attempts + 1, deps), code, count_attempt=True)
    if code == "errors.job-position.not-published":
        link = session.scalar(select(ProjectLink).where(ProjectLink.connection_id == connection.id, ProjectLink.project_id == upload.project_id))
        if link is not None:
            _flag_link(link, now)
    # A refused document is named as the main app sent it, not by Personio's form field.
    field = document_field or (error.field if isinstance(error, PersonioAPIError) else None)
    status = error.status if isinstance(error, PersonioAPIError) else None
    if filename is None and application and isinstance(error, PersonioAPIError):
        filename = _refused_filename(upload, error)
    said = personio_said(error.safe_detail) if isinstance(error, PersonioAPIError) else None
    raise _Finish(UploadState.REJECTED, code, field=field, status=status, filename=filename, said=said)


def _refused_filename(upload: Upload, error: PersonioAPIError) -> str | None:
    """The file an application error is about, when Personio's answer or the upload tells it."""
    sent = [d for d in upload.documents if d.personio_uuid is not None]
    names = {d.filename for d in sent}
    primary = error.primary_reason
    context = (primary.context if primary else None) or {}
    for key in ("original_filename", "filename", "file_name"):
        if isinstance(context.get(key), str) and context[key] in names:
            return str(context[key])
    uuid = context.get("uuid")
    match = next((d for d in sent if uuid is not None and d.personio_uuid == str(uuid)), None)
    if match is not None:
        return match.filename
    index = re.search(r"files\D*(\d+)", error.field or "")
    if index is not None and int(index.group(1)) < len(sent):
        return sent[int(index.group(1))].filename
    return sent[0].filename if len(sent) == 1 else None


def new_lease_token() -> str:
    return str(uuid_module.uuid4())
