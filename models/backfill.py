"""Backfills: a long-running set of backfill uploads the operator can see, pause and cancel.

The main app sends a backfill in chunks (see ``services.backfill``); each chunk is recorded in
its own short transaction and remembered in ``backfill_chunks``, so a chunk delivered twice or
out of order records nothing twice. Counts per state and outcome are computed from the uploads
(``uploads.backfill_id``), so they always add up to what was recorded.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, StrEnumType, utcnow


class BackfillState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # no new upload of it is dispatched; half-sent ones finish
    CANCELLED = "cancelled"  # its not-yet-started uploads ended ``cancelled``
    FINISHED = "finished"  # sealed (or complete) and every upload terminal


class BackfillKind(enum.StrEnum):
    INTAKE = "intake"  # candidates sent by the main app or the CLI
    REDRIVE = "redrive"  # existing uploads queued again


class Backfill(Base):
    """One backfill, keyed by the main app's backfill id."""

    __tablename__ = "backfills"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[BackfillKind] = mapped_column(StrEnumType(BackfillKind), default=BackfillKind.INTAKE)
    account_id: Mapped[str] = mapped_column(String(128), index=True)
    project_id: Mapped[str | None] = mapped_column(String(128))
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    expected_total: Mapped[int | None] = mapped_column(Integer)
    # Set by ``seal``: the set is complete (and, when given, how many chunks make it).
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    chunk_count: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[BackfillState] = mapped_column(StrEnumType(BackfillState), default=BackfillState.RUNNING)
    # Uploads recorded by intake (valid or not); chunks refused whole (too large, malformed).
    recorded: Mapped[int] = mapped_column(Integer, default=0)
    refused_chunks: Mapped[int] = mapped_column(Integer, default=0)
    # A re-drive's uploads left alone because the candidate is already in Personio for the job.
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]  # first upload claimed
    finished_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    # Round-robin between the backfills of one company: the one served longest ago goes next.
    last_dispatched_at: Mapped[datetime | None]
    # Progress events are throttled: when the last one went out, and the finished count it had.
    progress_published_at: Mapped[datetime | None]
    progress_published_done: Mapped[int] = mapped_column(Integer, default=0)


class BackfillChunk(Base):
    """One chunk of a backfill as received: the idempotency record of ``add_to_backfill``."""

    __tablename__ = "backfill_chunks"
    __table_args__ = (UniqueConstraint("backfill_id", "chunk_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backfill_id: Mapped[str] = mapped_column(ForeignKey("backfills.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[int] = mapped_column(Integer)
    recorded: Mapped[int] = mapped_column(Integer)  # new uploads this chunk created
    refused: Mapped[str | None] = mapped_column(String(255))  # why the chunk was refused whole
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
