"""kombu's Redis transport, hardened for a queue that other programs write to.

What kombu's own transport does not do, and this one adds:

**Poison messages.** kombu turns the bytes it pops from a Redis list into a message inside
the channel (``json.loads``, then base64, then the envelope's fields), before Celery's
``on_decode_error`` exists for it. Anything malformed there raises in the worker's event loop:
the process exits, or stops consuming; a message that fails *after* it was recorded as unacked
is restored by the visibility timeout and kills the next worker too. Here every popped item is
checked completely first — bytes, JSON, envelope, body, task name, argument shape — and what
fails is moved to a bounded dead-letter list with the reason and time (``personio-sync
dead-letters`` lists, requeues and drops them) and reported as an event. Nothing a producer
pushes can stop a worker.

**Fast redelivery after a kill.** Redis has no consumer-side acknowledgement; kombu emulates
it with an "unacked" hash and redelivers what was not acked within the visibility timeout. A
long timeout strands a killed worker's messages for that long; a short one redelivers
messages that a live worker is still working on. Here every consumer refreshes the timestamp
of the messages it holds (a heartbeat every third of the timeout), so the timeout can be
short (30 s by default): a killed worker's messages come back within the timeout plus one
restore sweep, and a live worker's never do.

**Nothing popped is lost** (see ``Channel``), and **no candidate data in task events**: the
``argsrepr`` Celery shows in Flower and logs is rewritten to ids only (``redact_arguments``).

Registered with kombu under the names ``personio-redis`` and ``personio-rediss``; the app maps
``redis://``, ``rediss://`` and ``redis+socket://`` URLs onto them (see ``broker_url_for``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from config.names import (
    DEAD_LETTERS_KEY,
    EVENT_MESSAGE_DEAD_LETTERED,
    EVENTS_STREAM,
    HOLDING_INDEX_KEY,
    HOLDING_KEY,
    TASK_ARGUMENTS,
)
from services.schemas import usable_request_id

log = logging.getLogger(__name__)

# Dead letters kept at most (oldest dropped first), and the largest message kept whole; a
# bigger one is kept as its first bytes for inspection and cannot be requeued.
DEAD_LETTERS_MAX = 10_000
DEAD_LETTER_RAW_MAX = 16 * 1024 * 1024
# Deeper JSON than this is no upload request (ours nest six levels); refusing it early keeps
# the parser's recursion away from the interpreter's limit.
MAX_JSON_DEPTH = 64


class PoisonMessage(Exception):
    """An item on one of our queues that is not a message any of our tasks can run."""


@dataclass(frozen=True)
class Inspected:
    payload: dict[str, Any]
    task: str
    message_id: str
    args: list[Any]



def inspect_message(raw: bytes | str) -> Inspected:
    """Check one item popped from a queue completely; raise :class:`PoisonMessage` with the reason.

    Accepts exactly what Celery's protocol 2 over kombu's Redis transport produces with JSON
    bodies: the checks mirror every field kombu and Celery read before a task runs.
    """
    text = _text(raw, "message")
    payload = _json(text, "message")
    if not isinstance(payload, dict):
        raise PoisonMessage(f"message is a JSON {_kind(payload)}, not an object (a Celery envelope)")
    headers = _field(payload, "headers", dict)
    properties = _field(payload, "properties", dict)
    body = _field(payload, "body", str)
    if payload.get("content-type") != "application/json":
        raise PoisonMessage("content-type must be application/json (JSON is the only serializer accepted)")
    if payload.get("content-encoding") not in ("utf-8", None):
        raise PoisonMessage("content-encoding must be utf-8")
    if properties.get("body_encoding") != "base64":
        raise PoisonMessage("properties.body_encoding must be base64")
    tag = properties.get("delivery_tag")
    if not isinstance(tag, str) or not 0 < len(tag) <= 255:
        raise PoisonMessage("properties.delivery_tag must be a non-empty string")
    delivery_info = properties.get("delivery_info")
    if not isinstance(delivery_info, dict):
        raise PoisonMessage("properties.delivery_info must be an object")
    for key in ("exchange", "routing_key"):
        if not isinstance(delivery_info.get(key), str):
            raise PoisonMessage(f"properties.delivery_info.{key} must be a string")
    priority = properties.get("priority", 0)
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 255):
        raise PoisonMessage("properties.priority must be an integer from 0 to 255")
    if "compression" in headers:
        raise PoisonMessage("compressed bodies are not accepted")
    task = headers.get("task")
    if not isinstance(task, str):
        raise PoisonMessage("headers.task is missing (only Celery protocol 2 messages are accepted)")
    if task not in TASK_ARGUMENTS:
        raise PoisonMessage(f"headers.task names no task of personio-sync ({task[:100]!r})")
    message_id = headers.get("id")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= 255:
        raise PoisonMessage("headers.id must be a non-empty string (the task id)")
    for key in ("eta", "expires"):
        value = headers.get(key)
        if value is not None and not _is_timestamp(value):
            raise PoisonMessage(f"headers.{key} must be null or an ISO 8601 time")
    retries = headers.get("retries", 0)
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0):
        raise PoisonMessage("headers.retries must be a non-negative integer")
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, list) and len(timelimit) == 2 and all(v is None or _is_number(v) for v in timelimit)
    ):
        raise PoisonMessage("headers.timelimit must be [soft, hard] seconds or null")
    for key in ("root_id", "parent_id", "group", "argsrepr", "kwargsrepr", "origin", "lang", "shadow", "replaced_task_nesting"):
        value = headers.get(key)
        if value is not None and not isinstance(value, (str, int)):
            raise PoisonMessage(f"headers.{key} must be a string or null")

    try:
        decoded = base64.b64decode(body.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise PoisonMessage("body is not valid base64") from None
    arguments = _json(_text(decoded, "body"), "body")
    if not (isinstance(arguments, list) and len(arguments) == 3):
        raise PoisonMessage("body must be the JSON array [args, kwargs, embed]")
    args, kwargs, embed = arguments
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not isinstance(embed, dict):
        raise PoisonMessage("body must be the JSON array [args, kwargs, embed] of a list and two objects")
    for key in ("callbacks", "errbacks", "chain", "chord"):
        if embed.get(key) not in (None, []):
            raise PoisonMessage(f"body's embed.{key} is not accepted (no canvas on this queue)")
    expected = TASK_ARGUMENTS[task]
    if kwargs:
        raise PoisonMessage(f"{task} takes no keyword arguments")
    if len(args) != len(expected):
        raise PoisonMessage(f"{task} takes {len(expected)} argument(s), the message has {len(args)}")
    for position, (value, kind) in enumerate(zip(args, expected, strict=True)):
        if kind is not object and (not isinstance(value, kind) or isinstance(value, bool)):
            raise PoisonMessage(f"{task} argument {position + 1} must be {kind.__name__}, the message has {_kind(value)}")
    return Inspected(payload=payload, task=task, message_id=message_id, args=args)


def _text(raw: bytes | str, what: str) -> str:
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PoisonMessage(f"{what} is not UTF-8 text") from None
    if not text.strip():
        raise PoisonMessage(f"{what} is empty")
    return text


def _json(text: str, what: str) -> Any:
    depth = _max_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise PoisonMessage(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        # The parser's message names a position, never content.
        raise PoisonMessage(f"{what} is not JSON ({str(exc)[:120]})") from None


def _max_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, without parsing (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _field(payload: Mapping[str, Any], key: str, kind: type) -> Any:
    value = payload.get(key)
    if not isinstance(value, kind):
        found = "is missing" if key not in payload else f"is {_kind(value, article=True)}"
        raise PoisonMessage(f"envelope's {key} {found}; it must be a JSON {'object' if kind is dict else 'string'}")
    return value


def _kind(value: Any, *, article: bool = False) -> str:
    if value is None:
        kind = "null"
    elif isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, (int, float)):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    else:
        kind = "object"
    if not article or kind == "null":
        return kind
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def redact_arguments(inspected: Inspected) -> None:
    """Replace the envelope's ``argsrepr``/``kwargsrepr`` with ids only, whatever the producer wrote.

    Celery shows these two headers in task events (Flower) and logs instead of the arguments;
    a producer that copies the request into them would put candidate data there. An upload
    request is shown by its ``request_id`` when that is a plain id, other tasks by their
    integer and id arguments.
    """
    headers = inspected.payload["headers"]
    shown = []
    for value in inspected.args:
        if isinstance(value, dict):
            request_id = value.get("request_id") or value.get("backfill_id")
            shown.append(f"<request {request_id}>" if usable_request_id(request_id) else "<request>")
        elif isinstance(value, int) and not isinstance(value, bool):
            shown.append(str(value))
        else:
            shown.append("<…>")
    headers["argsrepr"] = "[" + ", ".join(shown) + "]"
    headers["kwargsrepr"] = "{}"


def dead_letter_record(raw: bytes | str, *, queue: str, reason: str, now: float | None = None) -> dict[str, Any]:
    """The JSON stored for one dead letter: the bytes as received (base64), and why."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    kept = data[:DEAD_LETTER_RAW_MAX]
    task = message_id = None
    try:
        envelope = json.loads(data) if len(data) <= DEAD_LETTER_RAW_MAX and _max_depth(data.decode("utf-8")) <= MAX_JSON_DEPTH else None
        headers = envelope.get("headers") if isinstance(envelope, dict) else None
        if isinstance(headers, dict):
            task = headers.get("task") if isinstance(headers.get("task"), str) else None
            message_id = headers.get("id") if isinstance(headers.get("id"), str) else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    return {
        "id": str(uuid.uuid4()),
        "at": datetime.fromtimestamp(now if now is not None else time.time(), UTC).isoformat(),
        "queue": queue,
        "reason": reason,
        "task": task[:200] if task else None,
        "message_id": message_id[:255] if message_id else None,
        "size": len(data),
        "complete": len(kept) == len(data),
        "raw_base64": base64.b64encode(kept).decode("ascii"),
    }


# Pops the first item of the first non-empty list and, in the same atomic step, keeps a copy
# in the "holding" hash with the time, so no kill between the pop and kombu's own unacked
# record can lose it. KEYS: holding hash, holding index, then the lists in order.
# ARGV: now, a fresh id. Returns {list, item, id} or nil.
_POP_AND_HOLD = """
for i = 3, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    redis.call('HSET', KEYS[1], ARGV[2] .. ':item', item, ARGV[2] .. ':queue', KEYS[i])
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
    return {KEYS[i], item, ARGV[2]}
  end
end
return nil
"""

# Puts held items older than ARGV[1] back at the consuming end of their list. KEYS: holding
# hash, holding index. Returns how many came back.
_RESTORE_HELD = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(stale) do
  local item = redis.call('HGET', KEYS[1], id .. ':item')
  local queue = redis.call('HGET', KEYS[1], id .. ':queue')
  if item and queue then
    redis.call('RPUSH', queue, item)
  end
  redis.call('HDEL', KEYS[1], id .. ':item', id .. ':queue')
  redis.call('ZREM', KEYS[2], id)
end
return #stale
"""

# How long an idle consumer waits before it asks again (the pop cannot block; see Channel).
IDLE_POLL_SECONDS = 0.05


def _is_remote_control_reply(queue: str) -> bool:
    """kombu names a remote-control reply queue ``<oid>.reply.<app>.pidbox`` (kombu.pidbox)."""
    return queue.endswith(".pidbox") and ".reply." in queue


class Channel(kombu_redis.Channel):
    """kombu's Redis channel: popped items are held atomically and inspected before delivery.

    kombu pops with BRPOP and records the message as unacked afterwards: a worker killed
    between the two (or a Redis crash that loses BRPOP's reply) loses the message for good.
    Here the pop is a Lua script that keeps a copy in a holding hash in the same step; the copy
    is dropped once kombu has recorded the message (or it was dead-lettered), and any worker
    puts copies older than the visibility timeout back on their queue. A script cannot block,
    so an idle consumer asks again every ``IDLE_POLL_SECONDS`` instead of waiting in BRPOP.
    """

    # kombu's unannotated defaults (False, None) make these bool and None to mypy; they hold
    # the polled connection (or False/None) and the monotonic time the pop was sent (or None).
    _in_poll: Any
    _brpop_sent_at: Any
    _idle_until = 0.0
    _wake_pending = False

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        wait = self._idle_until - time.monotonic()
        if wait > 0:
            if getattr(self.connection.cycle, "hub", None) is not None:
                self._wake_in(wait)  # the worker's event loop comes back after the idle pause
                return
            # No event loop (a plain consumer: `celery inspect`, Flower's remote control): the
            # caller polls the socket right after this, so a pop must be in flight — returning
            # without one made it wait its whole timeout for an answer that was already there.
            time.sleep(wait)
            self._idle_until = 0.0
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        self.client.connection.send_command("EVAL", *self._pop_and_hold_args(keys))

    def _holding_keys(self) -> tuple[str, str]:
        return self._option("holding_key", HOLDING_KEY), self._option("holding_index_key", HOLDING_INDEX_KEY)

    def _pop_and_hold_args(self, lists: list[str]) -> list[str | int]:
        """The arguments of EVAL for the pop-and-hold script over ``lists`` (in order)."""
        return [_POP_AND_HOLD, len(lists) + 2, *self._holding_keys(), *lists, repr(time.time()), uuid.uuid4().hex]

    def _wake_in(self, seconds: float) -> None:
        """Make the worker's event loop come back to this channel after ``seconds``."""
        hub = self.connection.cycle.hub
        if not self._wake_pending:
            self._wake_pending = True

            def wake() -> None:
                self._wake_pending = False

            hub.call_later(seconds, wake)

    def _brpop_read(self, **options: Any) -> bool:
        # kombu's _brpop_read, reading the script's answer and with ``_accept`` where it calls
        # ``_deliver(loads(item))``.
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVAL", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except kombu_redis.redis.ResponseError:
                log.exception("the pop script failed; retrying shortly")
                reply = None
            if reply:
                dest, item, held_id = reply
                dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                self._idle_until = 0.0
                self._accept(item, dest)
                self._release(bytes_to_str(held_id))
                return True
            self._idle_until = time.monotonic() + IDLE_POLL_SECONDS
            raise kombu_redis.Empty()
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _release(self, held_id: str) -> None:
        """Drop the holding copy: kombu's unacked record (or a dead letter) has the message now."""
        with self.conn_or_acquire() as client:
            pipe = client.pipeline()
            holding, index = self._holding_keys()
            pipe.hdel(holding, f"{held_id}:item", f"{held_id}:queue")
            pipe.zrem(index, held_id)
            pipe.execute()

    def restore_held(self, older_than: float) -> int:
        """Put items held longer than ``older_than`` seconds (their consumer died) back on their queues."""
        with self.conn_or_acquire() as client:
            return int(
                client.eval(
                    _RESTORE_HELD, 2, *self._holding_keys(), repr(time.time() - older_than),
                )
            )

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        # The synchronous path (basic_get): the same held pop; dead letters are skipped so the
        # caller sees the next good message or Empty. ``timeout`` is kombu's virtual-channel
        # signature; like kombu's Redis channel this never blocks and ignores it.
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps]
        with self.conn_or_acquire() as client:
            while True:
                reply = client.eval(*self._pop_and_hold_args(keys))
                if not reply:
                    break
                _, item, held_id = reply
                if _is_remote_control_reply(queue):
                    self._release(bytes_to_str(held_id))
                    return cast("dict[str, Any]", kombu_redis.loads(bytes_to_str(item)))
                try:
                    payload = inspect_message(item).payload
                except PoisonMessage as poison:
                    self._dead_letter(item, queue, str(poison))
                    self._release(bytes_to_str(held_id))
                    continue
                # Released before kombu records it: basic_get (this synchronous path) keeps
                # kombu's small window; the worker's event loop consumes through _brpop_read.
                self._release(bytes_to_str(held_id))
                return payload
            self._maybe_update_queues_expire(client, queue)
            raise kombu_redis.Empty()

    def _accept(self, item: bytes, queue: str) -> None:
        if _is_remote_control_reply(queue):
            self._deliver_unchecked(item, queue)
            return
        try:
            inspected = inspect_message(item)
        except PoisonMessage as poison:
            self._dead_letter(item, queue, str(poison))
            return
        tag = inspected.payload["properties"]["delivery_tag"]
        redact_arguments(inspected)
        try:
            self.connection._deliver(inspected.payload, queue)
        except self.connection_errors:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever fails here must not reach the event loop
            # Delivered but not runnable: make sure the unacked copy cannot come back and
            # fail the next worker the same way.
            try:
                self.qos._remove_from_indices(tag).execute()
                self.qos._delivered.pop(tag, None)
            except Exception:  # noqa: BLE001
                log.exception("could not drop the unacked copy of a refused message")
            self._dead_letter(item, queue, f"refused while delivering: {type(exc).__name__}")

    def _deliver_unchecked(self, item: bytes, queue: str) -> None:
        """Deliver a remote-control reply as kombu does (no task checks).

        The reply queues of remote control (``celery inspect``, Flower) carry kombu's own reply
        messages, not tasks: checked as tasks they would all be dead-lettered and ``inspect``
        would never hear back. Only the process that asked reads them, never a worker; a reply
        that is not even JSON is dropped with a warning instead of stopping that reader.
        """
        try:
            payload = kombu_redis.loads(bytes_to_str(item))
        except (ValueError, UnicodeDecodeError):
            log.warning("dropped a message on %s that is not JSON (%d bytes)", queue, len(item))
            return
        self.connection._deliver(payload, queue)

    def _dead_letter(self, item: bytes | str, queue: str, reason: str) -> None:
        record = dead_letter_record(item, queue=queue, reason=reason)
        log.error(
            "queue %s: message %s moved to the dead letters (%s); see `personio-sync dead-letters`",
            queue, record["message_id"] or record["id"], reason,
        )
        event = {
            "type": EVENT_MESSAGE_DEAD_LETTERED,
            # Written straight to the stream (no database is involved in refusing a message);
            # the dead letter's id doubles as the event id consumers deduplicate by.
            "event_id": record["id"],
            "dead_letter_id": record["id"],
            "queue": queue,
            "reason": reason,
            "at": record["at"],
        }
        if record["message_id"]:
            event["message_id"] = record["message_id"]
        if record["task"]:
            event["task"] = record["task"]
        key = self._option("dead_letters_key", DEAD_LETTERS_KEY)
        with self.conn_or_acquire() as client:
            pipe = client.pipeline()
            pipe.lpush(key, json.dumps(record))
            pipe.ltrim(key, 0, DEAD_LETTERS_MAX - 1)
            pipe.xadd(self._option("events_stream", EVENTS_STREAM), event, maxlen=100_000, approximate=True)
            pipe.execute()

    def _option(self, name: str, default: str) -> str:
        # Our own transport options (kombu keeps unknown ones on the connection untouched).
        return str(self.connection.client.transport_options.get(name, default))

    def refresh_visibility(self) -> int:
        """Stamp every message this channel holds unacked with the current time (heartbeat)."""
        qos = self.qos
        # list() of a dict runs without releasing the GIL, so pool threads acking meanwhile
        # cannot break the iteration.
        held = [tag for tag in list(qos._delivered) if tag not in qos._dirty]
        if not held:
            return 0
        now = time.time()
        with self.conn_or_acquire() as client:
            # XX: only messages still unacked; one acked meanwhile must not come back.
            client.zadd(self.unacked_index_key, dict.fromkeys(held, now), xx=True)
        return len(held)


class Transport(kombu_redis.Transport):
    Channel = Channel

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        # The Redis transport's cycle is its MultiChannelPoller (kombu types the virtual base's
        # as FairCycle | None); the heartbeat timer and the hub are hung on it here.
        cycle: Any = self.cycle
        old = getattr(cycle, "_visibility_heartbeat_tref", None)
        if old is not None:
            old.cancel()
        timeout = float(connection.client.transport_options.get("visibility_timeout", Channel.visibility_timeout))
        cycle._visibility_heartbeat_tref = loop.call_repeatedly(max(timeout / 3, 1.0), lambda: self._heartbeat(timeout))
        cycle.hub = loop  # lets an idle channel schedule its next pop

    def _heartbeat(self, timeout: float) -> None:
        poller = cast(kombu_redis.MultiChannelPoller, self.cycle)
        for channel in list(poller._channels):
            try:
                channel.refresh_visibility()
                restored = channel.restore_held(timeout)
                if restored:
                    log.warning("%d message(s) popped by a consumer that died before recording them: back on their queues", restored)
            except channel.connection_errors:
                # Redis is away: kombu reconnects; the next beat stamps again.
                log.debug("visibility heartbeat skipped: Redis unreachable", exc_info=True)
            except Exception:  # noqa: BLE001 - a heartbeat must never stop the event loop
                log.exception("visibility heartbeat failed")


TRANSPORT_ALIASES.setdefault("personio-redis", f"{__name__}:Transport")
TRANSPORT_ALIASES.setdefault("personio-rediss", f"{__name__}:Transport")


def broker_url_for(url: str) -> str:
    """The broker URL that selects this transport for a ``redis://``, ``rediss://`` or ``redis+socket://`` URL."""
    for scheme, ours in (("redis+socket://", "personio-redis+socket://"), ("rediss://", "personio-rediss://"), ("redis://", "personio-redis://")):
        if url.startswith(scheme):
            return ours + url[len(scheme):]
    return url
