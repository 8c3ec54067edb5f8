"""Send upload requests and backfills to personio-sync from the main app (needs only redis-py).

::

    from personio_sync_client import InvalidRequest, PersonioSyncClient

    client = PersonioSyncClient.from_url("redis://redis:6379/0")   # personio-sync's REDIS_URL
    task_id = client.send_upload_request({"request_id": "...", "account_id": "...", ...})

The messages are Celery protocol-2 messages on personio-sync's intake queue, exactly as
``Celery.send_task`` would push them; the main app needs neither Celery nor personio-sync.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from personio_sync_client.client import PersonioSyncClient, backfill_chunks
from personio_sync_client.contract import (
    BACKFILL_CHUNK_MAX_BYTES,
    BACKFILL_CHUNK_MAX_CANDIDATES,
    BACKFILL_TASK,
    INTAKE_QUEUE,
    UPLOAD_TASK,
)
from personio_sync_client.validation import InvalidRequest

try:
    __version__ = version("personio-sync-client")
except PackageNotFoundError:  # imported from a checkout
    __version__ = "0+unknown"

__all__ = [
    "BACKFILL_CHUNK_MAX_BYTES",
    "BACKFILL_CHUNK_MAX_CANDIDATES",
    "BACKFILL_TASK",
    "INTAKE_QUEUE",
    "UPLOAD_TASK",
    "InvalidRequest",
    "PersonioSyncClient",
    "backfill_chunks",
    "send_backfill",
    "send_upload_request",
]


@lru_cache(maxsize=8)
def _client(broker_url: str) -> PersonioSyncClient:
    return PersonioSyncClient.from_url(broker_url)


def send_upload_request(request: dict[str, Any], *, broker_url: str) -> str:
    """Queue one upload request on the Redis at ``broker_url`` (one client per URL, reused)."""
    return _client(broker_url).send_upload_request(request)


def send_backfill(backfill: dict[str, Any], *, broker_url: str) -> str:
    """Send a whole backfill (start, chunks, seal) to the Redis at ``broker_url``."""
    return _client(broker_url).send_backfill(backfill)
