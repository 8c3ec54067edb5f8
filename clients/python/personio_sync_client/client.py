"""The producer: validates a message locally, then pushes it as Celery would (redis-py only)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from personio_sync_client.contract import BACKFILL_TASK, INTAKE_QUEUE, UPLOAD_TASK
from personio_sync_client.envelope import build_message
from personio_sync_client.validation import InvalidRequest, backfill_errors, upload_request_errors


@dataclass(frozen=True)
class MessageKind:
    """One kind of message a producer sends: its task, local checks and the id shown in logs."""

    what: str  # names the message in errors ("upload request")
    task: str
    errors: Callable[[Any], list[str]]
    id_field: str

    def envelope(self, message: Mapping[str, Any]) -> tuple[str, str]:
        errors = self.errors(message)
        if errors:
            raise InvalidRequest(self.what, errors)
        # The message is the task's only argument (contract.PRODUCER_TASKS). The id only (validated above): the worker shows the same, so Flower and logs carry
        # ids, never candidate data.
        argsrepr = f"[<request {message[self.id_field]}>]"
        try:
            return build_message(self.task, [dict(message)], queue=INTAKE_QUEUE, argsrepr=argsrepr)
        except (TypeError, ValueError, RecursionError) as exc:  # what the checks above cannot foresee
            raise InvalidRequest(self.what, [f"message: is not JSON ({type(exc).__name__})"]) from None


UPLOAD_REQUEST = MessageKind("upload request", UPLOAD_TASK, upload_request_errors, "request_id")
BACKFILL = MessageKind("backfill", BACKFILL_TASK, backfill_errors, "backfill_id")


class PersonioSyncClient:
    """Sends upload requests and backfills to personio-sync's queue on its Redis.

    Every ``send_*`` validates first and raises :class:`InvalidRequest` (nothing sent) for a
    message that lacks what is required; it returns the Celery task id once Redis has the
    message. A send that raises ``redis.RedisError`` may or may not have reached Redis: send
    it again with the same ``request_id`` (or ``backfill_id``), the worker records it once.
    Outcomes come back on the events stream (``personio-sync:events``), keyed by request id.
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

    def send_upload_request(self, request: Mapping[str, Any]) -> str:
        """Queue one upload request (see the message contract); returns the task id."""
        return self._send(UPLOAD_REQUEST, [request])[0]

    def send_upload_requests(self, requests: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue many upload requests in one round trip; all are checked before any is sent."""
        return self._send(UPLOAD_REQUEST, list(requests))

    def send_backfill(self, backfill: Mapping[str, Any]) -> str:
        """Queue a backfill ``{"backfill_id", "account_id", "project_id", "candidates": [...]}``."""
        return self._send(BACKFILL, [backfill])[0]

    def _send(self, kind: MessageKind, messages: list[Mapping[str, Any]]) -> list[str]:
        built = []
        problems = []
        for index, message in enumerate(messages):
            try:
                built.append(kind.envelope(message))
            except InvalidRequest as invalid:
                problems += [f"#{index}: {line}" if len(messages) > 1 else line for line in invalid.errors]
        if problems:
            raise InvalidRequest(kind.what if len(messages) == 1 else f"{kind.what}s", problems)
        if not built:
            return []
        # kombu's Redis transport: LPUSH onto the list named like the queue; workers pop the other end.
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
