"""A customer's Personio connection and what we cache about it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, StrEnumType, utcnow


class Health(enum.StrEnum):
    UNCHECKED = "unchecked"
    HEALTHY = "healthy"
    INVALID_CREDENTIALS = "invalid_credentials"
    RECRUITING_DISABLED = "recruiting_disabled"
    FEED_DISABLED = "feed_disabled"
    FEED_UNREACHABLE = "feed_unreachable"
    RATE_LIMITED = "rate_limited"
    # Rate-limited without a break for longer than PERSONIO_SYNC_RATE_LIMITED_ALERT_AFTER.
    RATE_LIMITED_SUSTAINED = "rate_limited_sustained"
    CHANNEL_INVALID = "channel_invalid"


# Uploads for a connection in one of these states wait ("held") instead of failing.
HOLDING_HEALTH = frozenset({Health.INVALID_CREDENTIALS, Health.RECRUITING_DISABLED})


class Connection(Base):
    """One sourcing account linked to one Personio company (the admin's four inputs)."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(128), unique=True)
    company_id: Mapped[int] = mapped_column(BigInteger)
    # Fernet token (MultiFernet over PERSONIO_SYNC_SECRET_KEYS); never the plaintext.
    access_token_encrypted: Mapped[str] = mapped_column(Text)
    jobs_domain: Mapped[str] = mapped_column(String(253))
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    feed_language: Mapped[str] = mapped_column(String(2), default="de")
    # The Personio phase applications land in unless the link or the request says otherwise:
    # {"type": "system"|"custom", "id": …} as personio.phases.canonical_phase gives it; None:
    # Personio's initial phase for the job's category.
    phase: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    health: Mapped[Health] = mapped_column(StrEnumType(Health), default=Health.UNCHECKED)
    health_reason: Mapped[str | None] = mapped_column(String(128))
    health_checked_at: Mapped[datetime | None]
    health_changed_at: Mapped[datetime | None]
    credentials_ok_at: Mapped[datetime | None]
    channel_invalid_at: Mapped[datetime | None]
    # The first 429 of the current run of 429s; cleared when Personio answers anything else.
    rate_limited_since: Mapped[datetime | None]

    feed_etag: Mapped[str | None] = mapped_column(String(256))
    feed_last_modified: Mapped[str | None] = mapped_column(String(64))
    feed_sha256: Mapped[str | None] = mapped_column(String(64))
    feed_fetched_at: Mapped[datetime | None]
    feed_error: Mapped[str | None] = mapped_column(String(128))
    # Invalid <position>s left out of the last applied feed (no id, bad id, no name,
    # duplicate id); None before the first feed was applied.
    feed_skipped: Mapped[int | None] = mapped_column(Integer)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    jobs: Mapped[list[Job]] = relationship(back_populates="connection", cascade="all, delete-orphan")
    links: Mapped[list[ProjectLink]] = relationship(back_populates="connection", cascade="all, delete-orphan")


class Job(Base):
    """A Personio job position as last seen in the connection's jobs XML feed."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("connection_id", "job_position_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    job_position_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(512))
    office: Mapped[str | None] = mapped_column(String(256))
    additional_offices: Mapped[list[str]] = mapped_column(JSON, default=list)
    department: Mapped[str | None] = mapped_column(String(256))
    recruiting_category: Mapped[str | None] = mapped_column(String(256))
    employment_type: Mapped[str | None] = mapped_column(String(64))
    seniority: Mapped[str | None] = mapped_column(String(64))
    schedule: Mapped[str | None] = mapped_column(String(64))
    years_of_experience: Mapped[str | None] = mapped_column(String(32))
    keywords: Mapped[str | None] = mapped_column(Text)
    occupation: Mapped[str | None] = mapped_column(String(256))
    occupation_category: Mapped[str | None] = mapped_column(String(256))
    subcompany: Mapped[str | None] = mapped_column(String(256))
    salary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The names of the feed's <jobDescription> sections, in feed order (None: cached before 0006).
    sections: Mapped[list[str] | None] = mapped_column(JSON)
    personio_created_at: Mapped[datetime | None]
    published: Mapped[bool] = mapped_column(Boolean, default=True)
    unpublished_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    connection: Mapped[Connection] = relationship(back_populates="jobs")


class ProjectLink(Base):
    """A sourcing project linked to the one Personio job its candidates apply for."""

    __tablename__ = "project_links"
    __table_args__ = (UniqueConstraint("connection_id", "project_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(String(128))
    job_position_id: Mapped[int] = mapped_column(BigInteger)
    # This project's Personio phase (canonical form, see Connection.phase); overrides the
    # connection's, is overridden by a request's; None: the connection's.
    phase: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Set when the job left the feed, so the main app can ask for a new link.
    flag: Mapped[str | None] = mapped_column(String(64))
    flagged_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    connection: Mapped[Connection] = relationship(back_populates="links")
