"""The hardened Redis transport: poison messages are dead-lettered, held messages stay invisible.

The unit half checks ``inspect_message`` against the poison corpus and Celery's own messages;
the other half runs kombu with this transport against a real Redis (embedded, or REDIS_URL),
through both of kombu's read paths (BRPOP in an event loop, and RPOP for ``basic_get``).
"""

from __future__ import annotations

import base64
import inspect
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Consumer, Exchange, Queue

from config.names import EVENT_MESSAGE_DEAD_LETTERED, TASK_ARGUMENTS
from tests.worker.poison import POISON, envelope
from worker.transport import (
    DEAD_LETTER_RAW_MAX,
    PoisonMessage,
    broker_url_for,
    dead_letter_record,
    inspect_message,
)


@pytest.mark.parametrize(("name", "raw", "phrase"), POISON, ids=[p[0] for p in POISON])
def test_every_poison_message_is_refused_with_its_reason(name: str, raw: bytes, phrase: str) -> None:
    with pytest.raises(PoisonMessage) as refused:
        inspect_message(raw)
    assert phrase in str(refused.value)


def test_the_corpus_is_large_enough() -> None:
    assert len(POISON) >= 20


def test_the_readme_envelope_is_accepted() -> None:
    inspected = inspect_message(json.dumps(envelope()).encode())
    assert inspected.task == "personio_sync.upload_candidate"


def test_messages_celery_itself_sends_are_accepted(real_redis_url: str) -> None:
    """What our own code puts on the queues (send_task, countdowns, expiry) passes the check."""
    queue = f"test-celery-{uuid.uuid4().hex[:8]}"
    app = Celery("check", broker=real_redis_url.replace("unix://", "redis+socket://"), set_as_current=False)
    app.conf.update(task_serializer="json")
    sent = [
        ("personio_sync.upload_candidate", [{"request_id": "r"}], {}),
        ("personio_sync.process_upload", [12, "lease"], {"countdown": 1.5}),
        ("personio_sync.pump", [], {"expires": 4}),
        ("personio_sync.dispatch_connection", [3], {"retries": 2}),
    ]
    with app.connection_for_write() as connection:
        for name, args, options in sent:
            app.send_task(name, args=args, queue=queue, connection=connection, **options)
        client = connection.default_channel.client
        raws = client.lrange(queue, 0, -1)
        client.delete(queue)
    assert len(raws) == len(sent)
    assert sorted(inspect_message(raw).task for raw in raws) == sorted(name for name, _, _ in sent)


def test_argument_table_matches_the_task_functions() -> None:
    from worker.app import get_app

    app = get_app()
    app.loader.import_default_modules()
    registered = {name: task for name, task in app.tasks.items() if name.startswith("personio_sync.")}
    assert set(registered) == set(TASK_ARGUMENTS)
    for name, task in registered.items():
        parameters = list(inspect.signature(task.run).parameters.values())
        assert len(parameters) == len(TASK_ARGUMENTS[name]), name
        for parameter, kind in zip(parameters, TASK_ARGUMENTS[name], strict=True):
            annotation = parameter.annotation
            if kind is object:
                continue
            assert annotation in (kind, kind.__name__), (name, parameter.name, annotation)


def test_dead_letter_record_keeps_the_bytes_and_the_task_id() -> None:
    raw = json.dumps(envelope(properties__body_encoding="rot13")).encode()
    record = dead_letter_record(raw, queue="personio-sync", reason="why", now=0)
    assert base64.b64decode(record["raw_base64"]) == raw
    assert record["complete"] is True
    assert record["task"] == "personio_sync.upload_candidate"
    assert record["message_id"] == json.loads(raw)["headers"]["id"]
    assert record["at"] == "1970-01-01T00:00:00+00:00"


def test_an_oversized_dead_letter_is_kept_truncated_and_says_so() -> None:
    raw = b"x" * (DEAD_LETTER_RAW_MAX + 10)
    record = dead_letter_record(raw, queue="q", reason="why")
    assert record["complete"] is False
    assert record["size"] == len(raw)
    assert len(base64.b64decode(record["raw_base64"])) == DEAD_LETTER_RAW_MAX


def test_broker_urls_select_this_transport() -> None:
    assert broker_url_for("redis://h:6379/0") == "personio-redis://h:6379/0"
    assert broker_url_for("rediss://h:6380/1") == "personio-rediss://h:6380/1"
    assert broker_url_for("redis+socket:///tmp/r.sock") == "personio-redis+socket:///tmp/r.sock"
    assert broker_url_for("memory://") == "memory://"


# -- against a real Redis ---------------------------------------------------------------------


# The visibility timeout the tests of holding and redelivery run with (indirect ``broker``
# parameter): short, so that waiting several timeouts costs seconds, not tens of them.
SHORT_VISIBILITY = 1.0


@pytest.fixture
def broker(real_redis_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Connection, redis.Redis, dict[str, str]]]:
    """A kombu connection through our transport, with keys of its own on the shared server.

    Its visibility timeout is 3 s unless the test passes another (``indirect=True``).
    """
    visibility_timeout = getattr(request, "param", 3)
    suffix = uuid.uuid4().hex[:8]
    names = {"queue": f"test-poison-{suffix}", "dead": f"test-dead-{suffix}", "events": f"test-events-{suffix}",
             "holding": f"holding-{suffix}", "holding_index": f"holding_index-{suffix}"}
    url = real_redis_url.replace("unix://", "redis+socket://")
    options = {"visibility_timeout": visibility_timeout, "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
               "dead_letters_key": names["dead"], "events_stream": names["events"],
               "unacked_key": f"unacked-{suffix}", "unacked_index_key": f"unacked_index-{suffix}",
               "unacked_mutex_key": f"unacked_mutex-{suffix}",
               "holding_key": f"holding-{suffix}", "holding_index_key": f"holding_index-{suffix}"}
    connection = Connection(broker_url_for(url), transport_options=options)
    client = redis.Redis.from_url(real_redis_url)
    try:
        yield connection, client, names
    finally:
        connection.release()
        client.delete(names["queue"], names["dead"], names["events"], f"unacked-{suffix}", f"unacked_index-{suffix}",
                      f"holding-{suffix}", f"holding_index-{suffix}")
        client.close()


def _queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def _good(queue: str, request_id: str) -> bytes:
    message = envelope([{"request_id": request_id}])
    message["properties"]["delivery_info"]["routing_key"] = queue
    return json.dumps(message).encode()


def _consume(connection: Connection, queue: str, *, want: int, timeout: float = 10.0) -> list[Any]:
    received: list[Any] = []
    with Consumer(connection, [_queue(queue)], callbacks=[lambda body, message: received.append((body, message))], accept=["json"]):
        deadline = time.monotonic() + timeout
        while len(received) < want and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=0.5)
            except TimeoutError:
                pass
    return received


def test_poison_between_good_messages_is_dead_lettered_and_consumption_goes_on(
    broker: tuple[Connection, redis.Redis, dict[str, str]],
) -> None:
    connection, client, names = broker
    queue = names["queue"]
    _queue(queue)(connection.default_channel).declare()
    client.lpush(queue, _good(queue, "before"))
    for _, raw, _ in POISON:
        client.lpush(queue, raw)
    client.lpush(queue, _good(queue, "after"))

    received = _consume(connection, queue, want=2)

    assert [body[0][0]["request_id"] for body, _ in received] == ["before", "after"]
    for _, message in received:
        message.ack()
    dead = [json.loads(item) for item in reversed(client.lrange(names["dead"], 0, -1))]
    assert len(dead) == len(POISON)
    for record, (name, raw, phrase) in zip(dead, POISON, strict=True):
        assert phrase in record["reason"], name
        assert base64.b64decode(record["raw_base64"]) == raw, name
        assert record["queue"] == queue
    events = client.xrange(names["events"])
    assert len(events) == len(POISON)
    assert all(fields[b"type"] == EVENT_MESSAGE_DEAD_LETTERED.encode() for _, fields in events)
    # Only ids and reasons: never the message itself.
    assert not any(b"raw" in key for _, fields in events for key in fields)


def test_remote_control_replies_are_delivered_not_dead_lettered(broker: tuple[Connection, redis.Redis, dict[str, str]]) -> None:
    """``celery inspect`` reads its answers from ``<oid>.reply.celery.pidbox``: kombu's messages, not tasks."""
    connection, client, names = broker
    queue = f"{names['queue']}.reply.celery.pidbox"
    _queue(queue)(connection.default_channel).declare()
    reply = {"body": base64.b64encode(json.dumps({"w1@host": {"ok": "pong"}}).encode()).decode(),
             "content-encoding": "utf-8", "content-type": "application/json", "headers": {"ticket": "t-1"},
             "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "reply.celery.pidbox", "routing_key": queue},
                            "delivery_mode": 2, "delivery_tag": str(uuid.uuid4()), "priority": 0}}
    client.lpush(queue, b"not json")  # dropped with a warning: the reader goes on
    client.lpush(queue, json.dumps(reply).encode())
    try:
        received = _consume(connection, queue, want=1)
    finally:
        client.delete(queue)

    assert [body for body, _ in received] == [{"w1@host": {"ok": "pong"}}]
    assert client.llen(names["dead"]) == 0


def test_the_synchronous_read_path_skips_poison_too(broker: tuple[Connection, redis.Redis, dict[str, str]]) -> None:
    connection, client, names = broker
    queue = names["queue"]
    channel = connection.default_channel
    _queue(queue)(channel).declare()
    client.lpush(queue, b"not JSON")
    client.lpush(queue, _good(queue, "good"))
    message = channel.basic_get(queue)
    assert message is not None
    assert json.loads(message.body)[0][0]["request_id"] == "good"
    assert client.llen(names["dead"]) == 1


def _hold_one(broker: tuple[Connection, redis.Redis, dict[str, str]], request_id: str) -> tuple[Any, Any]:
    """A consumer takes one message off its queue and holds it unacked: (channel, message)."""
    connection, client, names = broker
    queue = names["queue"]
    channel = connection.default_channel
    _queue(queue)(channel).declare()
    client.lpush(queue, _good(queue, request_id))
    message = channel.basic_get(queue)
    assert message is not None
    return channel, message


@pytest.mark.parametrize("broker", [SHORT_VISIBILITY], indirect=True)
def test_a_held_message_is_not_redelivered_while_its_holder_lives(broker: tuple[Connection, redis.Redis, dict[str, str]]) -> None:
    """The heartbeat: a message held for three visibility timeouts stays with its holder."""
    _, client, names = broker
    channel, message = _hold_one(broker, "held")
    held_until = time.monotonic() + 3 * SHORT_VISIBILITY
    while time.monotonic() < held_until:
        channel.refresh_visibility()  # what the worker's event loop does every timeout / 3
        channel.qos.restore_visible(num=100, interval=1)  # what every other worker's sweep does
        assert client.llen(names["queue"]) == 0, "a message held by a live consumer was redelivered"
        time.sleep(SHORT_VISIBILITY / 6)
    message.ack()
    assert client.zcard(channel.unacked_index_key) == 0


@pytest.mark.parametrize("broker", [SHORT_VISIBILITY], indirect=True)
def test_a_dead_holders_message_comes_back_after_the_timeout(broker: tuple[Connection, redis.Redis, dict[str, str]]) -> None:
    _, client, names = broker
    queue = names["queue"]
    channel, _ = _hold_one(broker, "orphan")
    # The holder dies: no more heartbeats. Another consumer's sweep brings it back.
    channel.qos._delivered.clear()
    started = time.monotonic()
    while client.llen(queue) == 0:
        assert time.monotonic() - started < 10 * SHORT_VISIBILITY, "not redelivered"
        channel.qos.restore_visible(num=100, interval=1)
        time.sleep(0.05)
    assert time.monotonic() - started >= 0.9 * SHORT_VISIBILITY  # not before the timeout
    assert json.loads(base64.b64decode(json.loads(client.lindex(queue, 0))["body"]))[0][0]["request_id"] == "orphan"


def test_consumed_messages_leave_no_holding_copy(broker: tuple[Connection, redis.Redis, dict[str, str]]) -> None:
    connection, client, names = broker
    queue = names["queue"]
    _queue(queue)(connection.default_channel).declare()
    client.lpush(queue, _good(queue, "one"))
    client.lpush(queue, b"not JSON")
    received = _consume(connection, queue, want=1)
    assert len(received) == 1
    time.sleep(0.3)
    assert client.hlen(names["holding"]) == 0
    assert client.zcard(names["holding_index"]) == 0


def test_a_message_popped_by_a_consumer_that_died_before_recording_it_comes_back(
    broker: tuple[Connection, redis.Redis, dict[str, str]],
) -> None:
    """The window kombu's BRPOP leaves open: popped, then killed before the unacked record."""
    from worker.transport import _POP_AND_HOLD

    connection, client, names = broker
    queue = names["queue"]
    channel = connection.default_channel
    client.lpush(queue, _good(queue, "orphan"))
    # What a consumer's pop does, atomically; then it is killed (nothing else happens).
    popped = client.eval(_POP_AND_HOLD, 3, names["holding"], names["holding_index"], queue, repr(time.time() - 60), "dead-consumer")
    assert popped is not None and client.llen(queue) == 0
    assert channel.restore_held(older_than=3600) == 0  # younger than the timeout: maybe still alive
    assert channel.restore_held(older_than=30) == 1
    assert json.loads(base64.b64decode(json.loads(client.lindex(queue, 0))["body"]))[0][0]["request_id"] == "orphan"
    assert client.hlen(names["holding"]) == 0


def test_argument_reprs_are_rewritten_to_ids_whatever_the_producer_wrote() -> None:
    from worker.transport import redact_arguments

    message = envelope([{"request_id": "req-7", "candidate": {"email": "alex@example.org"}}], headers__argsrepr="[{'email': 'alex@example.org'}]",
                       headers__kwargsrepr="{'x': 'alex@example.org'}")
    inspected = inspect_message(json.dumps(message).encode())
    redact_arguments(inspected)
    assert inspected.payload["headers"]["argsrepr"] == "[<request req-7>]"
    assert inspected.payload["headers"]["kwargsrepr"] == "{}"
    odd = inspect_message(json.dumps(envelope([{"request_id": "alex@example.org"}])).encode())
    redact_arguments(odd)
    assert odd.payload["headers"]["argsrepr"] == "[<request>]"
    step = inspect_message(json.dumps(envelope([12, "lease-token"], task="personio_sync.process_upload")).encode())
    redact_arguments(step)
    assert step.payload["headers"]["argsrepr"] == "[12, <…>]"
