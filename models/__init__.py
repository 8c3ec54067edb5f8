"""SQLAlchemy 2.0 models: the database is the source of truth for what still has to be sent."""

from models.base import Base, utcnow
from models.connection import HOLDING_HEALTH, Connection, Health, Job, ProjectLink
from models.outbox import OutboxEvent
from models.upload import (
    TERMINAL_STATES,
    ApplicationClaim,
    DocumentSource,
    Priority,
    Upload,
    UploadDocument,
    UploadEvent,
    UploadState,
)

__all__ = [
    "HOLDING_HEALTH",
    "TERMINAL_STATES",
    "ApplicationClaim",
    "Base",
    "Connection",
    "DocumentSource",
    "Health",
    "Job",
    "OutboxEvent",
    "Priority",
    "ProjectLink",
    "Upload",
    "UploadDocument",
    "UploadEvent",
    "UploadState",
    "utcnow",
]
