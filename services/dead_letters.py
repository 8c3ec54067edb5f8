"""Reading and resolving dead letters: messages our queues refused (see ``worker.transport``).

Each dead letter keeps the bytes as received, the queue, the reason and the time. An operator
lists them, requeues the ones whose cause is fixed (e.g. a producer that sent a task this
worker version did not know yet), and drops the rest. Requeued bytes are checked again on
arrival, so a message that is still bad comes straight back here.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, cast

import redis

from config.names import ALL_QUEUES, DEAD_LETTERS_KEY


@dataclass(frozen=True)
class DeadLetter:
    id: str
    at: str
    queue: str
    reason: str
    task: str | None
    message_id: str | None
    size: int
    complete: bool
    raw: bytes
    stored: str  # the list entry as stored, to remove exactly this one

    def summary(self) -> dict[str, Any]:
        """What an operator sees: never the message bytes (they may hold candidate data)."""
        return {
            "id": self.id, "at": self.at, "queue": self.queue, "reason": self.reason, "task": self.task,
            "message_id": self.message_id, "size": self.size, "requeueable": self.requeueable,
        }

    @property
    def requeueable(self) -> bool:
        return self.complete and self.queue in ALL_QUEUES


class DeadLetterError(Exception):
    pass


def list_dead_letters(client: redis.Redis, *, key: str = DEAD_LETTERS_KEY) -> list[DeadLetter]:
    """Every dead letter, oldest first."""
    letters = []
    # redis-py types every reply as "Awaitable | Any" (one annotation for the sync and the
    # asyncio client); this synchronous client answers LRANGE with a list.
    entries = cast("list[bytes | str]", client.lrange(key, 0, -1))
    for stored in reversed(entries):
        text = stored.decode() if isinstance(stored, bytes) else stored
        try:
            record = json.loads(text)
            letters.append(
                DeadLetter(
                    id=record["id"], at=record["at"], queue=record["queue"], reason=record["reason"],
                    task=record.get("task"), message_id=record.get("message_id"), size=int(record["size"]),
                    complete=bool(record["complete"]), raw=base64.b64decode(record["raw_base64"]), stored=text,
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # not written by us; left alone
    return letters


def _select(client: redis.Redis, ids: list[str] | None, key: str) -> list[DeadLetter]:
    letters = list_dead_letters(client, key=key)
    if ids is None:
        return letters
    by_id = {letter.id: letter for letter in letters}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise DeadLetterError(f"no dead letter with id {', '.join(unknown)}; `personio-sync dead-letters` lists them")
    return [by_id[i] for i in ids]


def requeue_dead_letters(client: redis.Redis, ids: list[str] | None, *, key: str = DEAD_LETTERS_KEY) -> list[DeadLetter]:
    """Push the selected letters (None: all) back onto their queues, unchanged; returns them."""
    selected = _select(client, ids, key)
    refused = [letter.id for letter in selected if not letter.requeueable]
    if ids is not None and refused:
        raise DeadLetterError(f"dead letter {', '.join(refused)} cannot be requeued (truncated, or not from one of our queues)")
    done = []
    for letter in selected:
        if not letter.requeueable:
            continue
        pipe = client.pipeline()
        pipe.lrem(key, 1, letter.stored)
        pipe.lpush(letter.queue, letter.raw)
        pipe.execute()
        done.append(letter)
    return done


def drop_dead_letters(client: redis.Redis, ids: list[str] | None, *, key: str = DEAD_LETTERS_KEY) -> list[DeadLetter]:
    """Delete the selected letters (None: all); returns them."""
    selected = _select(client, ids, key)
    for letter in selected:
        client.lrem(key, 1, letter.stored)
    return selected
