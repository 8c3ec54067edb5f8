"""Events for the main app on a Redis stream: terminal upload outcomes and health changes."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import redis

log = logging.getLogger(__name__)


class EventPublisher(Protocol):
    def publish(self, event: Mapping[str, Any]) -> None: ...


class RedisStreamPublisher:
    """XADD each event as flat string fields (``type`` plus the event's fields)."""

    def __init__(self, client: redis.Redis, stream: str, *, maxlen: int = 100_000) -> None:
        self._client = client
        self._stream = stream
        self._maxlen = maxlen

    def publish(self, event: Mapping[str, Any]) -> None:
        fields = {key: _flat(value) for key, value in event.items() if value is not None}
        try:
            self._client.xadd(self._stream, fields, maxlen=self._maxlen, approximate=True)
        except redis.RedisError as exc:
            # The database keeps the outcome; ``personio-sync status`` still shows it.
            log.warning("could not publish %s event: %s", event.get("type"), exc)


class ListPublisher:
    """Collects events in memory (tests)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False)
