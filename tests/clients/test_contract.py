"""The producer package sends exactly what the service accepts: names, shapes, ids, limits, checks.

The package may not import the service, so it keeps its own copy of the names; these tests are
what keeps the copy equal to ``config/names.py``, the worker's transport and the producer in
``tasks/producer.py``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import redis

import tasks.producer
from config import names
from services.backfill import candidate_entry_size, chunk_problem, valid_backfill_id
from services.schemas import UploadRequestInvalid, load_upload_request, usable_request_id
from tests.services.bad_requests import INVALID, POLICY, REJECTED, cases, valid
from worker.transport import inspect_message, redact_arguments

from personio_sync_client import InvalidRequest, PersonioSyncClient, backfill_chunks, contract  # isort: skip
from personio_sync_client import client as client_module  # isort: skip
from personio_sync_client.client import (  # isort: skip
    BACKFILL_CANCEL,
    BACKFILL_CHUNK,
    BACKFILL_PAUSE,
    BACKFILL_SEAL,
    BACKFILL_START,
    KINDS,
    UPLOAD_REQUEST,
    MessageKind,
)

SAMPLES: list[tuple[MessageKind, Any]] = [
    (UPLOAD_REQUEST, valid()),
    (BACKFILL_START, {"backfill_id": "bf-1", "account_id": "acct-a", "project_id": "proj-a", "expected_total": 2}),
    (BACKFILL_CHUNK, {"backfill_id": "bf-1", "chunk_index": 0,
                      "candidates": [valid()["candidate"], {"request_id": "own-id", "candidate": valid()["candidate"]}]}),
    (BACKFILL_SEAL, {"backfill_id": "bf-1", "chunk_count": 1}),
    (BACKFILL_PAUSE, "bf-1"),
    (BACKFILL_CANCEL, "bf-1"),
]


def whole_backfill(count: int = 2) -> dict[str, Any]:
    return {"backfill_id": "bf-1", "account_id": "acct-a", "project_id": "proj-a",
            "candidates": [{**valid()["candidate"], "email": f"c{n}@example.org"} for n in range(count)]}


def test_names_and_limits_are_the_services() -> None:
    for name in ("INTAKE_QUEUE", "UPLOAD_TASK", "BACKFILL_TASK", "BACKFILL_CHUNK_TASK", "BACKFILL_SEAL_TASK",
                 "BACKFILL_PAUSE_TASK", "BACKFILL_RESUME_TASK", "BACKFILL_CANCEL_TASK",
                 "BACKFILL_CHUNK_MAX_CANDIDATES", "BACKFILL_CHUNK_MAX_BYTES", "BACKFILL_ID_MAX_LENGTH"):
        assert getattr(contract, name) == getattr(names, name), name
    for task, arguments in contract.PRODUCER_TASKS.items():
        assert names.TASK_ARGUMENTS.get(task) == arguments, f"{task}: the service takes {names.TASK_ARGUMENTS.get(task)}"
    assert {kind.task for kind in KINDS} == set(contract.PRODUCER_TASKS)


def test_every_message_the_services_producer_sends_the_package_sends_too() -> None:
    """A task tasks/producer.py sends (the *_TASK names it uses) needs its twin in the package."""
    sent = {value for key, value in vars(tasks.producer).items() if key.endswith("_TASK") and isinstance(value, str)}
    missing = sent - set(contract.PRODUCER_TASKS)
    assert not missing, f"add {sorted(missing)} to clients/python (contract.PRODUCER_TASKS, a MessageKind and a method)"


@pytest.mark.parametrize("value", ["a", "A.b_c:d-9", "x" * 64, "x" * 65, "x" * 128, "x" * 129, "", "-a", "a b", "a\n", "ä", "a/b"])
def test_ids_follow_the_services_rules(value: str) -> None:
    assert (not UPLOAD_REQUEST.errors({**valid(), "request_id": value})) == (usable_request_id(value) is not None)
    assert (not BACKFILL_PAUSE.errors(value)) == (valid_backfill_id(value) is not None)


@pytest.mark.parametrize("kind,argument", SAMPLES, ids=[kind.task for kind, _ in SAMPLES])
def test_envelope_passes_the_workers_checks_unchanged(kind: MessageKind, argument: Any) -> None:
    envelope, task_id = kind.envelope(argument)
    inspected = inspect_message(envelope.encode())
    assert inspected.task == kind.task and inspected.message_id == task_id
    assert inspected.args == [argument]
    headers = inspected.payload["headers"]
    sent_repr = headers["argsrepr"]
    redact_arguments(inspected)
    assert headers["argsrepr"] == sent_repr, "the package shows what the worker shows: ids only"
    assert inspected.payload["properties"]["delivery_info"]["routing_key"] == names.INTAKE_QUEUE


def test_argsrepr_carries_no_candidate_data() -> None:
    envelope, _ = UPLOAD_REQUEST.envelope(valid())
    headers = json.loads(envelope)["headers"]
    assert headers["argsrepr"] == "[<request corpus-0>]" and headers["kwargsrepr"] == "{}"
    assert "Zelinda" not in json.dumps(headers)


def test_text_survives_the_round_trip() -> None:
    request = valid()
    request["candidate"]["last_name"] = "Müller-Łukasiewicz 山田"
    envelope, _ = UPLOAD_REQUEST.envelope(request)
    assert inspect_message(envelope).args == [request]


def test_chunks_are_packed_and_measured_as_the_service_does() -> None:
    entries = [{"request_id": f"bf:{n}", "candidate": {"first_name": "Jörg" * (n % 7), "last_name": "X", "email": f"{n}@example.org"}}
               for n in range(1203)]
    assert [client_module.validation.entry_size(entry) for entry in entries[:20]] == [candidate_entry_size(entry) for entry in entries[:20]]
    ours = list(backfill_chunks(entries))
    assert ours == list(tasks.producer.backfill_chunks(entries))
    assert [len(chunk) for chunk in ours] == [500, 500, 203]
    assert all(chunk_problem(chunk) is None for chunk in ours)
    by_size = list(backfill_chunks(entries, max_bytes=10_000))
    assert by_size == list(tasks.producer.backfill_chunks(entries, max_bytes=10_000))
    with pytest.raises(InvalidRequest, match=r"candidates.0: is \d+ bytes as JSON, more than a chunk holds \(10\)"):
        list(backfill_chunks(entries, max_bytes=10))


@pytest.fixture
def real_redis(real_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(real_redis_url, decode_responses=True)
    client.delete(names.INTAKE_QUEUE)
    yield client
    client.delete(names.INTAKE_QUEUE)
    client.close()


def _queued(client: redis.Redis) -> list[dict[str, Any]]:
    """The queued envelopes in the order the worker takes them (LPUSH in, RPOP out)."""
    return [json.loads(item) for item in reversed(client.lrange(names.INTAKE_QUEUE, 0, -1))]


def _argument(envelope: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(envelope["body"]))[0][0]


def test_the_envelope_has_the_shape_celery_sends(real_redis: redis.Redis, real_redis_url: str) -> None:
    """Field for field what ``Celery.send_task`` pushes (the service's own producer), values aside."""
    tasks.producer.send_upload_request(valid("by-celery"), broker_url=real_redis_url.replace("unix://", "redis+socket://"))
    PersonioSyncClient.from_url(real_redis_url).send_upload_request(valid("by-client"))
    by_celery, by_client = _queued(real_redis)

    def shape(envelope: dict[str, Any]) -> dict[str, Any]:
        return {key: sorted(value) if isinstance(value, dict) else type(value).__name__ for key, value in envelope.items()}

    assert shape(by_client) == {**shape(by_celery), "properties": sorted(set(by_celery["properties"]) - {"argsrepr", "kwargsrepr"})}
    for key in ("content-type", "content-encoding"):
        assert by_client[key] == by_celery[key]
    for key in ("lang", "retries", "timelimit", "kwargsrepr", "eta", "expires", "group", "parent_id"):
        assert by_client["headers"][key] == by_celery["headers"][key], key
    for key in ("delivery_mode", "delivery_info", "priority", "body_encoding"):
        assert by_client["properties"][key] == by_celery["properties"][key], key
    body_client, body_celery = (json.loads(base64.b64decode(e["body"])) for e in (by_client, by_celery))
    assert body_client[1:] == body_celery[1:]
    assert body_client[0][0] == {**body_celery[0][0], "request_id": "by-client"}


def test_a_whole_backfill_goes_as_the_services_producer_sends_it(real_redis: redis.Redis, real_redis_url: str) -> None:
    backfill = whole_backfill(1001)
    tasks.producer.send_backfill(backfill, broker_url=real_redis_url.replace("unix://", "redis+socket://"))
    by_celery = [(e["headers"]["task"], _argument(e)) for e in _queued(real_redis)]
    real_redis.delete(names.INTAKE_QUEUE)
    assert PersonioSyncClient.from_url(real_redis_url).send_backfill(backfill) == "bf-1"
    by_client = [(e["headers"]["task"], _argument(e)) for e in _queued(real_redis)]
    assert by_client == by_celery
    assert [task for task, _ in by_client] == [names.BACKFILL_TASK] + [names.BACKFILL_CHUNK_TASK] * 3 + [names.BACKFILL_SEAL_TASK]
    assert by_client[-1][1] == {"backfill_id": "bf-1", "chunk_count": 3}
    assert by_client[1][1]["candidates"][0]["request_id"] == "bf-1:0"


def test_a_batch_is_all_or_nothing(real_redis: redis.Redis, real_redis_url: str) -> None:
    client = PersonioSyncClient.from_url(real_redis_url)
    broken = valid("b-2")
    del broken["candidate"]["email"]
    with pytest.raises(InvalidRequest) as refused:
        client.send_upload_requests([valid("b-1"), broken])
    assert refused.value.errors == ["#1: candidate.email: is required (non-blank text)"]
    assert real_redis.llen(names.INTAKE_QUEUE) == 0
    ids = client.send_upload_requests([valid("b-1"), valid("b-2")])
    assert [envelope["headers"]["id"] for envelope in _queued(real_redis)] == ids


def test_missing_and_non_json_fields_are_named_without_their_values() -> None:
    request = valid()
    del request["account_id"]
    request["candidate"]["first_name"] = "  "
    request["candidate"]["application_date"] = date(2026, 1, 2)
    request["candidate"]["documents"] = [{"category": "cv", "filename": "cv.pdf"}]
    request["priority"] = "urgent"
    with pytest.raises(InvalidRequest) as refused:
        UPLOAD_REQUEST.envelope(request)
    assert sorted(refused.value.errors) == sorted([
        "account_id: is required (1-128 characters)",
        "candidate.first_name: is required (non-blank text)",
        "candidate.application_date: date is not a JSON value (send dates as 'YYYY-MM-DD' text, files as base64 text)",
        "candidate.documents.0: needs exactly one of content_base64 or url",
        "priority: must be one of interactive, backfill",
    ])
    assert str(refused.value).startswith("upload request not sent:")
    assert "Zelinda" not in str(refused.value)


def test_backfill_messages_are_checked_for_what_the_worker_would_refuse_whole() -> None:
    with pytest.raises(InvalidRequest) as refused:
        BACKFILL_CHUNK.envelope({"backfill_id": "x" * 65, "chunk_index": -1, "candidates": [valid()["candidate"], "Zelinda", {"candidate": {}}]})
    assert refused.value.errors == [
        "backfill_id: must be 1-64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit",
        "chunk_index: must be a whole number from 0 to 1000000",
        "candidates.1: must be a candidate object, not str",
        "candidates.2.request_id: is required (1-128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit)",
    ]
    with pytest.raises(InvalidRequest, match="a chunk holds at most 500 candidates, this one has 501"):
        BACKFILL_CHUNK.envelope({"backfill_id": "bf", "chunk_index": 0, "candidates": [{}] * 501})
    with pytest.raises(InvalidRequest, match="expected_total: must be a whole number from 0 to 10000000"):
        BACKFILL_START.envelope({"backfill_id": "bf", "account_id": "a", "project_id": "p", "expected_total": True})
    with pytest.raises(InvalidRequest, match="project_id: is required"):
        PersonioSyncClient(redis.Redis()).send_backfill({**whole_backfill(), "project_id": None})
    with pytest.raises(InvalidRequest, match="backfill_id: is required"):
        BACKFILL_SEAL.envelope({"chunk_count": 2})


def test_a_candidate_of_a_backfill_is_answered_by_the_worker_not_refused_here() -> None:
    """One bad profile in a chunk becomes that candidate's rejected outcome; the rest go on."""
    chunk = {"backfill_id": "bf", "chunk_index": 0, "candidates": [{"first_name": "only a first name"}, valid()["candidate"]]}
    inspect_message(BACKFILL_CHUNK.envelope(chunk)[0])


def test_never_stricter_than_the_service() -> None:
    """What the package refuses, the worker refuses too: the package never blocks a good request."""
    for case in cases():
        if not isinstance(case.payload, dict):
            continue
        try:
            UPLOAD_REQUEST.envelope(case.payload)
        except InvalidRequest:
            assert case.expect in (REJECTED, INVALID), f"{case.name}: the package refuses a request the service accepts"
            with pytest.raises(UploadRequestInvalid):
                load_upload_request(case.payload, POLICY)
