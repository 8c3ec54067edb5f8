"""Personal data kept only as long as needed: document bytes, the retention purge, keyed email digests.

What is kept, where and for how long is the README's "Personal data" section; in short:

- **Document bytes** go when the upload becomes terminal (``services.uploads.finish``): by then
  Personio has them or never will. Not earlier, because a file Personio drops before the
  application is posted (``errors.file-validation.file-not-exists``) is uploaded again.
  :func:`purge_document_bytes` sweeps whatever a terminal upload still holds (rows written before
  this rule, or by a path that ends an upload without ``finish``).
- **Candidate data** of a terminal upload is reduced after the retention period
  (``PERSONIO_SYNC_RETENTION_DAYS``) by :func:`purge_expired_batch`: the candidate JSON is
  emptied, document file names and URLs are replaced, messages and history details lose the
  values that came from the candidate, and the normalised email becomes a keyed digest. What
  stays is what deduplication and reporting need: ids, outcomes, reason codes, timestamps,
  document sizes and hashes, the digest.
- **Deduplication keeps working** after the purge: an :class:`ApplicationClaim` of a purged
  upload holds the digest instead of the address, and ``services.processing`` looks a claim up
  by the address *and* its digests (:meth:`EmailDigests.claim_keys`). The digest is an
  HMAC-SHA256 under a key derived from each of ``PERSONIO_SYNC_SECRET_KEYS`` (newest first), so
  it cannot be reversed by hashing guessed addresses, and a claim made under an older key
  matches as long as that key is still listed.

Each batch is one short unit of work; the task wrapper (``tasks.maintenance``) commits it and
starts the next, so no run holds the database for long or loads more than one batch.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, cast

import redis
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from config.names import EVENT_RETENTION_PURGED
from models import TERMINAL_STATES, ApplicationClaim, Upload, UploadDocument
from services.events import EventPublisher

log = logging.getLogger(__name__)

# Prefix of a digest stored where a normalised email address used to be.
DIGEST_PREFIX = "hmac:"
DIGEST_PURPOSE = "personio-sync email digest v1"
# Stands where a value from the candidate was quoted (same in English and German).
REDACTED = "…"
DEFAULT_BATCH_SIZE = 500


class EmailDigests:
    """Keyed digests of normalised email addresses; the first key makes new ones."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        self._keys = tuple(keys)

    @classmethod
    def from_cipher(cls, cipher: Any) -> EmailDigests:
        """Keys derived from the token cipher's keys (``services.secrets.TokenCipher.derived_keys``)."""
        return cls(cipher.derived_keys(DIGEST_PURPOSE))

    def digest(self, email_normalized: str) -> str:
        return DIGEST_PREFIX + _hmac(self._keys[0], email_normalized)

    def all_digests(self, email_normalized: str) -> tuple[str, ...]:
        return tuple(DIGEST_PREFIX + _hmac(key, email_normalized) for key in self._keys)

    def claim_keys(self, email_normalized: str) -> tuple[str, ...]:
        """Every value a claim for this address may hold: the address itself, then its digests."""
        return (email_normalized, *self.all_digests(email_normalized))


def _hmac(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def claim_keys(email_normalized: str, digests: EmailDigests | None) -> tuple[str, ...]:
    """What ``ApplicationClaim.email_normalized`` may hold for this address (no digests: itself)."""
    return digests.claim_keys(email_normalized) if digests is not None else (email_normalized,)


def is_digest(value: str | None) -> bool:
    return value is not None and value.startswith(DIGEST_PREFIX)


@dataclass
class PurgeCounts:
    """What one purge run (or batch) changed: counts only, never which candidate."""

    uploads: int = 0  # terminal uploads reduced after the retention period
    documents: int = 0  # documents whose bytes were deleted
    document_bytes: int = 0  # their size in bytes (as recorded)
    claims: int = 0  # duplicate-guard claims whose address became a digest

    def add(self, other: PurgeCounts) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    @property
    def total(self) -> int:
        return self.uploads + self.documents + self.claims

    def as_dict(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


# ------------------------------------------------------------------ redaction


def personal_values(upload: Upload) -> list[str]:
    """Every text of this upload that came from the candidate: what messages must not quote after a purge."""
    values: set[str] = set()
    _collect(upload.candidate, values)
    if upload.email_normalized and not is_digest(upload.email_normalized):
        values.add(upload.email_normalized)
    for document in upload.documents:
        values.add(document.filename)
        if document.url:
            values.add(document.url)
    # Longest first, so "Alex Example" goes before "Alex".
    return sorted((v for v in values if len(v.strip()) >= 2), key=len, reverse=True)


# Candidate fields whose values are labels or dates, not the person: redacting them would garble
# messages (a tag "personio" would blank out every "Personio").
_NOT_PERSONAL = frozenset({"tags", "category", "content_base64", "application_date", "available_from"})


def _collect(value: Any, into: set[str]) -> None:
    if isinstance(value, str):
        into.add(value.strip())
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _NOT_PERSONAL:
                _collect(item, into)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, into)


def redact(text: str | None, values: Iterable[str]) -> str | None:
    """``text`` with every whole-word occurrence of ``values`` (case-insensitive) replaced by ``…``."""
    if not text:
        return text
    for value in values:
        pattern = re.compile(r"(?<![\w@.+-])" + re.escape(value) + r"(?![\w@-])", re.IGNORECASE)
        text = pattern.sub(REDACTED, text)
    return text


def placeholder_filename(document: UploadDocument) -> str:
    """What a purged document is called: its position and file type, not its name."""
    extension = os.path.splitext(document.filename)[1][:16]
    kept = extension if re.fullmatch(r"\.[A-Za-z0-9]+", extension) else ""
    return f"document-{document.position + 1}{kept}"


def reduce_upload(upload: Upload, *, now: datetime, email_digest: str | None) -> None:
    """Reduce one upload to ids, hashes and outcomes (the caller chose the digest, or None).

    Idempotent: a reduced upload has nothing left to reduce. Its documents keep category,
    size, sha256 and Personio's uuid; their bytes, names and URLs go.
    """
    values = personal_values(upload)
    upload.candidate = {}
    upload.email_normalized = email_digest
    upload.message_en = redact(upload.message_en, values)
    upload.message_de = redact(upload.message_de, values)
    for document in upload.documents:
        document.content = None
        document.url = None
        document.filename = placeholder_filename(document)
    for event in upload.events:
        event.detail = redact(event.detail, values)
        event.reason_code = redact(event.reason_code, values)
    upload.purged_at = now


# ------------------------------------------------------------------ the purge


def purge_document_bytes(session: Session, *, batch_size: int = DEFAULT_BATCH_SIZE) -> PurgeCounts:
    """Delete the bytes of up to ``batch_size`` documents of terminal uploads; flushes, the caller commits."""
    rows = session.execute(
        select(UploadDocument.id, UploadDocument.size)
        .join(Upload, Upload.id == UploadDocument.upload_id)
        .where(UploadDocument.content.is_not(None), Upload.state.in_(TERMINAL_STATES))
        .order_by(UploadDocument.id)
        .limit(batch_size)
    ).all()
    if not rows:
        return PurgeCounts()
    session.execute(
        update(UploadDocument)
        .where(UploadDocument.id.in_([row.id for row in rows]))
        .values(content=None)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return PurgeCounts(documents=len(rows), document_bytes=sum(row.size or 0 for row in rows))


def purge_expired_batch(
    session: Session,
    *,
    now: datetime,
    retention: timedelta,
    digests: EmailDigests,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> PurgeCounts:
    """Reduce up to ``batch_size`` terminal uploads finished before ``now - retention``; flushes, the caller commits.

    Oldest first; an upload already purged is never selected again, so a run that died half-way
    simply continues. Claims owned by these uploads keep guarding duplicates under the digest.
    """
    cutoff = now - retention
    uploads = session.scalars(
        select(Upload)
        .where(
            Upload.purged_at.is_(None),
            Upload.finished_at.is_not(None),
            Upload.finished_at <= cutoff,
            Upload.state.in_(TERMINAL_STATES),
        )
        .order_by(Upload.finished_at, Upload.id)
        .limit(batch_size)
        .options(selectinload(Upload.documents), selectinload(Upload.events))
    ).all()
    counts = PurgeCounts()
    if not uploads:
        return counts
    by_id = {upload.id: upload for upload in uploads}
    for upload in uploads:
        email = upload.email_normalized
        digest = digests.digest(email) if email and not is_digest(email) else email
        reduce_upload(upload, now=now, email_digest=digest)
        counts.uploads += 1
    claims = session.scalars(
        select(ApplicationClaim).where(ApplicationClaim.upload_id.in_(list(by_id)), ApplicationClaim.email_normalized.not_like(DIGEST_PREFIX + "%"))
    ).all()
    for claim in claims:
        claim.email_normalized = digests.digest(claim.email_normalized)
        counts.claims += 1
    session.flush()
    return counts


def retention_due(session: Session, *, now: datetime, retention: timedelta) -> int:
    """How many terminal uploads wait for the purge (for status and tests)."""
    return int(
        session.scalar(
            select(func.count(Upload.id)).where(
                Upload.purged_at.is_(None),
                Upload.finished_at.is_not(None),
                Upload.finished_at <= now - retention,
                Upload.state.in_(TERMINAL_STATES),
            )
        )
        or 0
    )


def retention_event(counts: PurgeCounts, now: datetime) -> dict[str, Any]:
    """The ``retention.purged`` event: counts only."""
    return {"type": EVENT_RETENTION_PURGED, "at": now.isoformat(), **counts.as_dict()}


def run_retention(
    unit_of_work: Callable[[], AbstractContextManager[Session]],
    *,
    now: Callable[[], datetime],
    retention: timedelta,
    digests: EmailDigests,
    events_for: Callable[[Session], EventPublisher],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int = 400,
    max_seconds: float = 300.0,
) -> PurgeCounts:
    """Purge in batches, each in its own unit of work (``unit_of_work`` commits it); returns the totals.

    Document bytes first (any terminal upload), then uploads past the retention period. Stops
    after ``max_batches`` or ``max_seconds``; the next run continues where this one stopped.
    A run that changed anything publishes one ``retention.purged`` event with the counts.
    """
    totals = PurgeCounts()
    started = time.monotonic()
    batches = 0

    def more() -> bool:
        return batches < max_batches and time.monotonic() - started < max_seconds

    while more():
        with unit_of_work() as session:
            counts = purge_document_bytes(session, batch_size=batch_size)
        batches += 1
        totals.add(counts)
        if counts.documents < batch_size:
            break
    while more():
        with unit_of_work() as session:
            counts = purge_expired_batch(session, now=now(), retention=retention, digests=digests, batch_size=batch_size)
        batches += 1
        totals.add(counts)
        if counts.uploads < batch_size:
            break
    if totals.total:
        with unit_of_work() as session:
            events_for(session).publish(retention_event(totals, now()))
        log.info("retention: %s", ", ".join(f"{key} {value}" for key, value in totals.as_dict().items()))
    return totals


# Events are the main app's to read: never trimmed younger than this, whatever the retention.
MIN_EVENT_AGE = timedelta(days=1)


def trim_event_stream(client: redis.Redis, stream: str, *, now: datetime, retention: timedelta) -> int:
    """Drop events older than the retention period (at least a day) from the stream; returns how many.

    Events carry no candidate fields, but a message may quote a file name or Personio's
    explanation. Stream ids are millisecond timestamps, so XTRIM MINID cuts by age.
    """
    cutoff = now - max(retention, MIN_EVENT_AGE)
    return int(cast("int", client.xtrim(stream, minid=f"{int(cutoff.timestamp() * 1000)}-0", approximate=False)))
