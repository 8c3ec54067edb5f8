"""Send upload requests and backfills to personio-sync with Celery: the producer inside this
repository (the CLI's ``upload`` and ``backfill``, the demo, the benchmarks).

The main app does not import this module (it would need the whole service installed, whose
generic package names collide with an application's own): it installs the producer package
``personio-sync-client`` (``clients/python/``), which sends the same messages with redis-py
alone; ``tests/clients/test_contract.py`` keeps the two equal. Only Celery is needed here::

    from tasks.producer import send_upload_request
    send_upload_request({"request_id": "...", "account_id": "...", ...}, broker_url="redis://redis:6379/0")

The request is validated by the worker, not here, so the contract has one owner. The
task's argument is shown redacted in Flower and worker logs (``argsrepr``): candidate data
stays out of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from celery import Celery

from config.names import (
    BACKFILL_CANCEL_TASK,
    BACKFILL_CHUNK_MAX_BYTES,
    BACKFILL_CHUNK_MAX_CANDIDATES,
    BACKFILL_CHUNK_TASK,
    BACKFILL_PAUSE_TASK,
    BACKFILL_RESUME_TASK,
    BACKFILL_SEAL_TASK,
    BACKFILL_TASK,
    INTAKE_QUEUE,
    KOMBU_UNACKED_KEY,
    UPLOAD_TASK,
)

__all__ = [
    "BACKFILL_CHUNK_MAX_BYTES",
    "BACKFILL_CHUNK_MAX_CANDIDATES",
    "BACKFILL_CHUNK_TASK",
    "BACKFILL_SEAL_TASK",
    "BACKFILL_TASK",
    "INTAKE_QUEUE",
    "UPLOAD_TASK",
    "BackfillChunkError",
    "backfill_chunks",
    "send_backfill",
    "send_backfill_cancel",
    "send_backfill_chunk",
    "send_backfill_pause",
    "send_backfill_resume",
    "send_backfill_seal",
    "send_backfill_start",
    "send_upload_request",
    "wait_for_room",
]


@lru_cache(maxsize=8)
def _producer(broker_url: str) -> Celery:
    app = Celery("personio_sync_producer", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True)
    return app


def _send(task: str, payload: dict[str, Any], summary: str, broker_url: str) -> str:
    """Queue ``task(payload)`` on the intake queue; ``summary`` stands for the payload in logs."""
    result = _producer(broker_url).send_task(
        task, args=[payload], queue=INTAKE_QUEUE, argsrepr=f"[<{summary}>]", kwargsrepr="{}"
    )
    return str(result.id)


def send_upload_request(request: dict[str, Any], *, broker_url: str) -> str:
    """Queue one upload request; returns the Celery message id (track by ``request_id``)."""
    return _send(UPLOAD_TASK, request, f"upload request {request.get('request_id')!s:.128}", broker_url)


def _send_id(task: str, backfill_id: str, broker_url: str) -> str:
    result = _producer(broker_url).send_task(task, args=[backfill_id], queue=INTAKE_QUEUE, argsrepr=f"[{backfill_id!s:.64}]", kwargsrepr="{}")
    return str(result.id)


class BackfillChunkError(ValueError):
    """A chunk the worker would refuse: the message names the field and the fix."""


def candidate_entry_size(entry: Any) -> int:
    """Bytes of one candidate entry as the worker measures a chunk (compact JSON, UTF-8)."""
    return len(json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "surrogatepass"))


# Chunks are packed to this many bytes (a single larger candidate, up to the contract's limit,
# travels alone): every worker thread may hold a chunk while it waits for the database, so
# small chunks keep a worker's memory small; 2 MiB is still hundreds of candidates with CVs.
CHUNK_TARGET_BYTES = 2 * 1024 * 1024


def backfill_chunks(
    entries: Iterable[Any],
    *,
    max_candidates: int = BACKFILL_CHUNK_MAX_CANDIDATES,
    max_bytes: int = BACKFILL_CHUNK_MAX_BYTES,
    target_bytes: int = CHUNK_TARGET_BYTES,
) -> Iterator[list[Any]]:
    """Pack candidate entries (streamed: any iterable) into chunks within the contract's limits.

    Chunks hold up to ``max_candidates`` and about ``target_bytes``; a candidate larger than
    that goes alone. Raises :class:`BackfillChunkError` for a single entry larger than ``max_bytes``.
    """
    chunk: list[Any] = []
    size = 0
    fill = min(target_bytes, max_bytes)
    for position, entry in enumerate(entries):
        entry_size = candidate_entry_size(entry)
        if entry_size > max_bytes:
            raise BackfillChunkError(
                f"candidate #{position}: is {entry_size} bytes as JSON, more than a chunk holds ({max_bytes}); "
                "send its documents by url instead of inline, or make them smaller."
            )
        if chunk and (len(chunk) >= max_candidates or size + entry_size > fill):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry_size
    if chunk:
        yield chunk


def wait_for_room(*, broker_url: str, max_waiting: int, poll: float = 0.2, timeout: float | None = None) -> None:
    """Wait while more than ``max_waiting`` messages wait on the intake queue or sit unacknowledged
    with workers (pacing a producer).

    Chunks wait in Redis until a worker records them, and each worker thread reserves one: a
    producer faster than intake would otherwise park the whole backfill in Redis memory and fill
    every worker thread with a chunk. Returns at once when there is room.
    """
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    with _producer(broker_url).connection_for_write() as connection:
        client = connection.default_channel.client
        while int(client.llen(INTAKE_QUEUE)) + int(client.hlen(KOMBU_UNACKED_KEY)) > max_waiting:
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(poll)


def send_backfill_start(
    backfill_id: str, *, account_id: str, project_id: str, expected_total: int | None = None, broker_url: str
) -> str:
    """Open a backfill (idempotent by ``backfill_id``); returns the Celery message id."""
    payload: dict[str, Any] = {"backfill_id": backfill_id, "account_id": account_id, "project_id": project_id}
    if expected_total is not None:
        payload["expected_total"] = expected_total
    return _send(BACKFILL_TASK, payload, f"backfill {backfill_id!s:.64} start", broker_url)


def send_backfill_chunk(backfill_id: str, chunk_index: int, candidates: list[Any], *, broker_url: str) -> str:
    """Send one chunk: candidates (or ``{"request_id", "candidate"}`` entries) within the limits.

    ``chunk_index`` numbers the chunks of the backfill from 0; sending a chunk again with the
    same index records nothing twice. Raises :class:`BackfillChunkError` above the limits.
    """
    if len(candidates) > BACKFILL_CHUNK_MAX_CANDIDATES:
        raise BackfillChunkError(
            f"candidates: a chunk holds at most {BACKFILL_CHUNK_MAX_CANDIDATES} candidates, this one has {len(candidates)}; "
            "split it (backfill_chunks() does)."
        )
    size = sum(candidate_entry_size(entry) for entry in candidates)
    if size > BACKFILL_CHUNK_MAX_BYTES:
        raise BackfillChunkError(
            f"candidates: a chunk holds at most {BACKFILL_CHUNK_MAX_BYTES} bytes of JSON, this one has {size}; "
            "send fewer candidates per chunk (backfill_chunks() packs them), or documents by url."
        )
    payload = {"backfill_id": backfill_id, "chunk_index": chunk_index, "candidates": candidates}
    return _send(BACKFILL_CHUNK_TASK, payload, f"backfill {backfill_id!s:.64} chunk {chunk_index} of {len(candidates)}", broker_url)


def send_backfill_seal(backfill_id: str, *, chunk_count: int | None = None, broker_url: str) -> str:
    """Say the backfill is complete (optionally: it has ``chunk_count`` chunks, 0 … n-1)."""
    payload: dict[str, Any] = {"backfill_id": backfill_id}
    if chunk_count is not None:
        payload["chunk_count"] = chunk_count
    return _send(BACKFILL_SEAL_TASK, payload, f"backfill {backfill_id!s:.64} seal", broker_url)


def send_backfill_pause(backfill_id: str, *, broker_url: str) -> str:
    return _send_id(BACKFILL_PAUSE_TASK, backfill_id, broker_url)


def send_backfill_resume(backfill_id: str, *, broker_url: str) -> str:
    return _send_id(BACKFILL_RESUME_TASK, backfill_id, broker_url)


def send_backfill_cancel(backfill_id: str, *, broker_url: str) -> str:
    return _send_id(BACKFILL_CANCEL_TASK, backfill_id, broker_url)


def send_backfill(backfill: dict[str, Any], *, broker_url: str) -> str:
    """Send a whole backfill ``{"backfill_id", "account_id", "project_id", "candidates": [...]}`` in chunks.

    Start, chunks within the limits, seal. Each candidate keeps the request_id the single-message
    form gave it (``{backfill_id}:{index}``) unless it brings its own. Returns the backfill id.
    """
    backfill_id = str(backfill["backfill_id"])
    candidates = list(backfill.get("candidates") or [])
    entries = (
        entry if isinstance(entry, dict) and "candidate" in entry else {"request_id": f"{backfill_id}:{index}", "candidate": entry}
        for index, entry in enumerate(candidates)
    )
    send_backfill_start(backfill_id, account_id=backfill["account_id"], project_id=backfill["project_id"], expected_total=len(candidates), broker_url=broker_url)
    count = 0
    for count, chunk in enumerate(backfill_chunks(entries), 1):
        send_backfill_chunk(backfill_id, count - 1, chunk, broker_url=broker_url)
    send_backfill_seal(backfill_id, chunk_count=count, broker_url=broker_url)
    return backfill_id
