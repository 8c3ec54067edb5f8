"""The producer: validates a message locally, then pushes it as Celery would (redis-py only)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from personio_sync_client import validation
from personio_sync_client.contract import (
    BACKFILL_CANCEL_TASK,
    BACKFILL_CHUNK_MAX_BYTES,
    BACKFILL_CHUNK_MAX_CANDIDATES,
    BACKFILL_CHUNK_TASK,
    BACKFILL_PAUSE_TASK,
    BACKFILL_RESUME_TASK,
    BACKFILL_SEAL_TASK,
    BACKFILL_TASK,
    INTAKE_QUEUE,
    UPLOAD_TASK,
)
from personio_sync_client.envelope import build_message
from personio_sync_client.validation import InvalidRequest


def shown_argument(value: Any) -> str:
    """What Flower and worker logs show for an argument (the worker's own redaction): ids only."""
    if isinstance(value, Mapping):
        shown_id = value.get("request_id") or value.get("backfill_id")
        return f"<request {shown_id}>" if isinstance(shown_id, str) and not validation.id_errors(shown_id, "id") else "<request>"
    return "<…>"


@dataclass(frozen=True)
class MessageKind:
    """One kind of message a producer sends: its task and its local checks.

    Every producer task takes one argument (``contract.PRODUCER_TASKS``): the message object, or
    a backfill id. A new kind is one entry here and one ``send_*`` method.
    """

    what: str  # names the message in errors ("upload request")
    task: str
    errors: Callable[[Any], list[str]]

    def envelope(self, argument: Any) -> tuple[str, str]:
        """The JSON envelope and its task id; :class:`InvalidRequest` when the checks fail."""
        errors = self.errors(argument)
        if errors:
            raise InvalidRequest(self.what, errors)
        sent = dict(argument) if isinstance(argument, Mapping) else argument
        try:
            return build_message(self.task, [sent], queue=INTAKE_QUEUE, argsrepr=f"[{shown_argument(sent)}]")
        except (TypeError, ValueError, RecursionError) as exc:  # what the checks above cannot foresee
            raise InvalidRequest(self.what, [f"message: is not JSON ({type(exc).__name__})"]) from None


UPLOAD_REQUEST = MessageKind("upload request", UPLOAD_TASK, validation.upload_request_errors)
BACKFILL_START = MessageKind("backfill start", BACKFILL_TASK, validation.start_errors)
BACKFILL_CHUNK = MessageKind("backfill chunk", BACKFILL_CHUNK_TASK, validation.chunk_errors)
BACKFILL_SEAL = MessageKind("backfill seal", BACKFILL_SEAL_TASK, validation.seal_errors)
BACKFILL_PAUSE = MessageKind("backfill pause", BACKFILL_PAUSE_TASK, validation.backfill_id_errors)
BACKFILL_RESUME = MessageKind("backfill resume", BACKFILL_RESUME_TASK, validation.backfill_id_errors)
BACKFILL_CANCEL = MessageKind("backfill cancel", BACKFILL_CANCEL_TASK, validation.backfill_id_errors)
KINDS = (UPLOAD_REQUEST, BACKFILL_START, BACKFILL_CHUNK, BACKFILL_SEAL, BACKFILL_PAUSE, BACKFILL_RESUME, BACKFILL_CANCEL)


def backfill_chunks(
    entries: Iterable[Any], *, max_candidates: int = BACKFILL_CHUNK_MAX_CANDIDATES, max_bytes: int = BACKFILL_CHUNK_MAX_BYTES
) -> Iterator[list[Any]]:
    """Pack candidate entries (any iterable, consumed as it goes) into chunks within the limits.

    Raises :class:`InvalidRequest` for one entry larger than a chunk holds.
    """
    chunk: list[Any] = []
    size = 0
    for position, entry in enumerate(entries):
        entry_size = validation.entry_size(entry)
        if entry_size > max_bytes:
            raise InvalidRequest("backfill chunk", [
                f"candidates.{position}: is {entry_size} bytes as JSON, more than a chunk holds ({max_bytes}); "
                "send its documents by url instead of inline, or make them smaller"
            ])
        if chunk and (len(chunk) >= max_candidates or size + entry_size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry_size
    if chunk:
        yield chunk


class PersonioSyncClient:
    """Sends upload requests and backfills to personio-sync's queue on its Redis.

    Every ``send_*`` and backfill method validates first and raises :class:`InvalidRequest`
    (nothing sent) for a message that lacks what is required; it returns the Celery task id once
    Redis has the message. A call that raises ``redis.RedisError`` may or may not have reached
    Redis: repeat it with the same ids (``request_id``, ``backfill_id``, ``chunk_index``); the
    worker records everything once. Outcomes come back on the events stream
    (``personio-sync:events``), keyed by request id and backfill id.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PersonioSyncClient:
        """A client for personio-sync's Redis: ``redis://``, ``rediss://``, ``unix://`` (or kombu's
        ``redis+socket://``) URL, the same Redis and database as the worker's ``REDIS_URL``."""
        if url.startswith("redis+socket://"):
            url = "unix://" + url[len("redis+socket://"):]
        return cls(redis.Redis.from_url(url, **options))

    # -------------------------------------------------------------- uploads

    def send_upload_request(self, request: Mapping[str, Any]) -> str:
        """Queue one upload request (see the message contract); returns the task id."""
        return self._push([self._build(UPLOAD_REQUEST, request)])[0]

    def send_upload_requests(self, requests: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue many upload requests in one round trip; all are checked before any is sent."""
        return self._push(self._build_all(UPLOAD_REQUEST, list(requests)))

    # -------------------------------------------------------------- backfills

    def send_backfill(self, backfill: Mapping[str, Any]) -> str:
        """Send a whole backfill ``{"backfill_id", "account_id", "project_id", "candidates": [...]}``.

        Checked as a whole first, then sent as start, chunks within the limits and seal, in one
        round trip. Each candidate's request id is ``{backfill_id}:{index}`` unless its entry is
        ``{"request_id", "candidate"}``. Returns the backfill id. For candidates that arrive over
        time use :meth:`start_backfill`, :meth:`add_to_backfill` (with :func:`backfill_chunks`)
        and :meth:`seal_backfill`.
        """
        errors = validation.backfill_errors(backfill)
        if errors:
            raise InvalidRequest("backfill", errors)
        backfill_id = backfill["backfill_id"]
        candidates = backfill["candidates"]
        entries = (
            entry if "candidate" in entry else {"request_id": f"{backfill_id}:{index}", "candidate": entry}
            for index, entry in enumerate(candidates)
        )
        start = {"backfill_id": backfill_id, "account_id": backfill["account_id"], "project_id": backfill["project_id"],
                 "expected_total": len(candidates)}
        built = [self._build(BACKFILL_START, start)]
        for index, chunk in enumerate(backfill_chunks(entries)):
            built.append(self._build(BACKFILL_CHUNK, {"backfill_id": backfill_id, "chunk_index": index, "candidates": chunk}))
        built.append(self._build(BACKFILL_SEAL, {"backfill_id": backfill_id, "chunk_count": len(built) - 1}))
        self._push(built)
        return str(backfill_id)

    def start_backfill(self, backfill_id: str, *, account_id: str, project_id: str, expected_total: int | None = None) -> str:
        """Open a backfill (idempotent by ``backfill_id``); ``expected_total`` feeds its progress."""
        start: dict[str, Any] = {"backfill_id": backfill_id, "account_id": account_id, "project_id": project_id}
        if expected_total is not None:
            start["expected_total"] = expected_total
        return self._push([self._build(BACKFILL_START, start)])[0]

    def add_to_backfill(self, backfill_id: str, chunk_index: int, candidates: list[Any]) -> str:
        """Send one chunk (at most 500 candidates and 16 MiB of JSON; :func:`backfill_chunks` packs
        them). Chunks are numbered from 0; one sent again with the same index records nothing twice."""
        chunk = {"backfill_id": backfill_id, "chunk_index": chunk_index, "candidates": candidates}
        return self._push([self._build(BACKFILL_CHUNK, chunk)])[0]

    def seal_backfill(self, backfill_id: str, *, chunk_count: int | None = None) -> str:
        """Say the backfill is complete (optionally: it has ``chunk_count`` chunks, 0 … n-1)."""
        seal: dict[str, Any] = {"backfill_id": backfill_id}
        if chunk_count is not None:
            seal["chunk_count"] = chunk_count
        return self._push([self._build(BACKFILL_SEAL, seal)])[0]

    def pause_backfill(self, backfill_id: str) -> str:
        """Start no more of its uploads (half-sent ones finish) until :meth:`resume_backfill`."""
        return self._push([self._build(BACKFILL_PAUSE, backfill_id)])[0]

    def resume_backfill(self, backfill_id: str) -> str:
        return self._push([self._build(BACKFILL_RESUME, backfill_id)])[0]

    def cancel_backfill(self, backfill_id: str) -> str:
        """Cancel the uploads of the backfill not yet started (each gets the outcome ``cancelled``)."""
        return self._push([self._build(BACKFILL_CANCEL, backfill_id)])[0]

    # -------------------------------------------------------------- sending

    @staticmethod
    def _build(kind: MessageKind, argument: Any) -> tuple[str, str]:
        return kind.envelope(argument)

    @staticmethod
    def _build_all(kind: MessageKind, arguments: list[Any]) -> list[tuple[str, str]]:
        built = []
        problems = []
        for index, argument in enumerate(arguments):
            try:
                built.append(kind.envelope(argument))
            except InvalidRequest as invalid:
                problems += [f"#{index}: {line}" for line in invalid.errors]
        if problems:
            raise InvalidRequest(f"{kind.what}s", problems)
        return built

    def _push(self, built: list[tuple[str, str]]) -> list[str]:
        if built:
            # kombu's Redis transport: LPUSH onto the list named like the queue; workers pop the
            # other end, so messages are taken in the order they were pushed.
            pipe = self.redis.pipeline(transaction=False)
            for envelope, _ in built:
                pipe.lpush(INTAKE_QUEUE, envelope)
            pipe.execute()
        return [task_id for _, task_id in built]

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> PersonioSyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
