"""Upload requests, their documents, their history, and the duplicate guard."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, StrEnumType, utcnow


class UploadState(enum.StrEnum):
    QUEUED = "queued"  # waiting in the database until its company has budget
    SENDING = "sending"  # claimed under a lease by a dispatcher/worker
    HELD = "held"  # the connection's credentials or plan are broken; resumes when fixed
    SUBMITTED = "submitted"
    ALREADY_IN_PERSONIO = "already_in_personio"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its backfill was cancelled before it started


TERMINAL_STATES = frozenset(
    {UploadState.SUBMITTED, UploadState.ALREADY_IN_PERSONIO, UploadState.REJECTED, UploadState.FAILED, UploadState.CANCELLED}
)


class Priority(enum.StrEnum):
    INTERACTIVE = "interactive"  # a recruiter just clicked: goes first
    BACKFILL = "backfill"


class DocumentSource(enum.StrEnum):
    INLINE = "inline"
    URL = "url"


class Upload(Base):
    """One upload request from the main app, keyed by its ``request_id``."""

    __tablename__ = "uploads"
    __table_args__ = (
        # The id last: dispatch's ORDER BY next_attempt_at, id LIMIT n is the index order (0008).
        Index("ix_uploads_dispatch", "state", "connection_id", "priority", "next_attempt_at", "id"),
        Index("ix_uploads_lease", "state", "lease_until"),
        # One backfill's due uploads in order (round-robin between backfills, pause, cancel).
        Index("ix_uploads_backfill_dispatch", "backfill_id", "state", "next_attempt_at"),
        # The retention task's scan: terminal uploads not purged yet, oldest first.
        Index("ix_uploads_retention", "purged_at", "finished_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[str] = mapped_column(String(128))
    project_id: Mapped[str] = mapped_column(String(128))
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    job_position_id: Mapped[int | None] = mapped_column(BigInteger)
    email_normalized: Mapped[str | None] = mapped_column(String(320))
    # The validated candidate without document bytes (they live in upload_documents).
    candidate: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority: Mapped[Priority] = mapped_column(StrEnumType(Priority), default=Priority.INTERACTIVE)
    backfill_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The request's own submission options (not personal data, kept after retention): its
    # Personio phase (canonical form, see Connection.phase; None: the link's or connection's)
    # and the external posting id of a multiposting job board.
    phase: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    external_posting_id: Mapped[str | None] = mapped_column(String(255))

    state: Mapped[UploadState] = mapped_column(StrEnumType(UploadState), default=UploadState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # transient failures so far
    application_attempts: Mapped[int] = mapped_column(Integer, default=0)  # application POSTs sent
    # Set before an application POST and cleared by a definite answer: when it is still set
    # at the next attempt, Personio may have created the application we never heard back about.
    application_unconfirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None]

    reason_code: Mapped[str | None] = mapped_column(String(128))
    error_field: Mapped[str | None] = mapped_column(String(128))
    message_en: Mapped[str | None] = mapped_column(Text)
    message_de: Mapped[str | None] = mapped_column(Text)
    personio_status: Mapped[int | None] = mapped_column(Integer)
    channel_dropped: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed_by_duplicate: Mapped[bool] = mapped_column(Boolean, default=False)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]
    # When the retention period reduced this upload to ids, hashes and outcomes (services.retention).
    purged_at: Mapped[datetime | None]

    documents: Mapped[list[UploadDocument]] = relationship(
        back_populates="upload", cascade="all, delete-orphan", order_by="UploadDocument.position"
    )
    events: Mapped[list[UploadEvent]] = relationship(
        back_populates="upload", cascade="all, delete-orphan", order_by="UploadEvent.id"
    )

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class UploadDocument(Base):
    """A document of an upload: its bytes, content hash, and Personio uuid once uploaded.

    The uuid is stored the moment Personio returns it, so a retry of the same upload never
    spends budget on uploading the same file twice.
    """

    __tablename__ = "upload_documents"
    __table_args__ = (UniqueConstraint("upload_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    source: Mapped[DocumentSource] = mapped_column(StrEnumType(DocumentSource))
    url: Mapped[str | None] = mapped_column(Text)
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    size: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    personio_uuid: Mapped[str | None] = mapped_column(String(36))
    uploaded_at: Mapped[datetime | None]

    upload: Mapped[Upload] = relationship(back_populates="documents")


class UploadEvent(Base):
    """One state change of an upload: the readable history behind ``status``."""

    __tablename__ = "upload_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(32))
    reason_code: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    upload: Mapped[Upload] = relationship(back_populates="events")


class ApplicationClaim(Base):
    """Who owns the one application Personio allows per (company, job, email).

    Inserted before the application is posted; the unique constraint makes two uploads of
    the same candidate for the same job serialise instead of racing at Personio.
    """

    __tablename__ = "application_claims"
    __table_args__ = (UniqueConstraint("connection_id", "job_position_id", "email_normalized"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    job_position_id: Mapped[int] = mapped_column(BigInteger)
    email_normalized: Mapped[str] = mapped_column(String(320))
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
