"""SQLAlchemy 2.0 models: the database is the source of truth for what still has to be sent."""

from models.backfill import Backfill, BackfillChunk, BackfillKind, BackfillState
from models.base import Base, utcnow
from models.connection import HOLDING_HEALTH, Connection, Health, Job, ProjectLink
from models.outbox import OutboxEvent
from models.upload import TERMINAL_STATES as TERMINAL_STATES
from models.upload import ApplicationClaim as ApplicationClaim
from models.upload import DocumentSource as DocumentSource
from models.upload import Priority as Priority
from models.upload import Upload as Upload
from models.upload import UploadDocument as UploadDocument
from models.upload import UploadEvent as UploadEvent
from models.upload import UploadState as UploadState

__all__ = [
    "HOLDING_HEALTH",
    "TERMINAL_STATES",
    "ApplicationClaim",
    "Backfill",
    "BackfillChunk",
    "BackfillKind",
    "BackfillState",
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
