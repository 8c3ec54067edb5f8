"""Events waiting to be relayed to the main app's Redis stream (the transactional outbox).

A service adds an :class:`OutboxEvent` to the session that records a state change, so the
event commits (or rolls back) with it. The relay (``services.events.relay_outbox``) sends
pending rows to the stream in ``id`` order and deletes them once sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class OutboxEvent(Base):
    """One event for the stream; ``event_id`` (a UUID) lets consumers drop a re-sent copy."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # relay order
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Relay runs that failed to send it (Redis answered with an error); 0 while none did.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
