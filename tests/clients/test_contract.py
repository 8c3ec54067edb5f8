"""The producer package sends exactly what the service accepts: names, shapes, ids, checks.

The package may not import the service, so it keeps its own copy of the names; these tests are
what keeps the copy equal to ``config/names.py`` and the worker's transport.
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
from services.schemas import UploadRequestInvalid, load_upload_request, usable_request_id
from tests.services.bad_requests import INVALID, POLICY, REJECTED, cases, valid
from worker.transport import inspect_message, redact_arguments

from personio_sync_client import InvalidRequest, PersonioSyncClient, contract  # isort: skip
from personio_sync_client.client import BACKFILL, UPLOAD_REQUEST, MessageKind  # isort: skip

KINDS = (UPLOAD_REQUEST, BACKFILL)


def backfill() -> dict[str, Any]:
    return {"backfill_id": "bf-1", "account_id": "acct-a", "project_id": "proj-a",
            "candidates": [valid()["candidate"], {"request_id": "own-id", "candidate": valid()["candidate"]}]}


def test_names_are_the_services() -> None:
    assert contract.INTAKE_QUEUE == names.INTAKE_QUEUE
    assert contract.UPLOAD_TASK == names.UPLOAD_TASK
    assert contract.BACKFILL_TASK == names.BACKFILL_TASK
    for task, count in contract.PRODUCER_TASKS.items():
        assert task in names.TASK_ARGUMENTS, f"{task} is no task of the service"
        assert count == len(names.TASK_ARGUMENTS[task]), f"{task}: the service takes {len(names.TASK_ARGUMENTS[task])} argument(s)"
    assert {kind.task for kind in KINDS} == set(contract.PRODUCER_TASKS)


def test_every_message_the_services_producer_sends_the_package_sends_too() -> None:
    """A message added to tasks/producer.py (its *_TASK exports) needs its twin in the package."""
    exported = {getattr(tasks.producer, name) for name in tasks.producer.__all__ if name.endswith("_TASK")}
    sent_to_intake = exported - {names.INTAKE_QUEUE}
    missing = sent_to_intake - set(contract.PRODUCER_TASKS)
    assert not missing, f"add {sorted(missing)} to clients/python (contract.PRODUCER_TASKS, a MessageKind and a send_* method)"


@pytest.mark.parametrize("value", ["a", "A.b_c:d-9", "x" * 128, "x" * 129, "", "-a", "a b", "a\n", "ä", "a/b", "1:2"])
def test_ids_follow_the_services_rule(value: str) -> None:
    client_ok = not UPLOAD_REQUEST.errors({**valid(), "request_id": value})
    assert client_ok == (usable_request_id(value) is not None)


@pytest.mark.parametrize("kind,message", [(UPLOAD_REQUEST, valid()), (BACKFILL, backfill())], ids=["upload", "backfill"])
def test_envelope_passes_the_workers_checks_unchanged(kind: MessageKind, message: dict[str, Any]) -> None:
    envelope, task_id = kind.envelope(message)
    inspected = inspect_message(envelope.encode())
    assert inspected.task == kind.task and inspected.message_id == task_id
    assert inspected.args == [message]
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


@pytest.fixture
def real_redis(real_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(real_redis_url, decode_responses=True)
    client.delete(names.INTAKE_QUEUE)
    yield client
    client.delete(names.INTAKE_QUEUE)
    client.close()


def test_the_envelope_has_the_shape_celery_sends(real_redis: redis.Redis, real_redis_url: str) -> None:
    """Field for field what ``Celery.send_task`` pushes (the service's own producer), values aside."""
    tasks.producer.send_upload_request(valid("by-celery"), broker_url=real_redis_url.replace("unix://", "redis+socket://"))
    PersonioSyncClient.from_url(real_redis_url).send_upload_request(valid("by-client"))
    by_client, by_celery = (json.loads(item) for item in real_redis.lrange(names.INTAKE_QUEUE, 0, -1))

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


def test_a_batch_is_all_or_nothing(real_redis: redis.Redis, real_redis_url: str) -> None:
    client = PersonioSyncClient.from_url(real_redis_url)
    broken = valid("b-2")
    del broken["candidate"]["email"]
    with pytest.raises(InvalidRequest) as refused:
        client.send_upload_requests([valid("b-1"), broken])
    assert refused.value.errors == ["#1: candidate.email: is required (non-blank text)"]
    assert real_redis.llen(names.INTAKE_QUEUE) == 0
    ids = client.send_upload_requests([valid("b-1"), valid("b-2")])
    queued = [json.loads(item)["headers"]["id"] for item in real_redis.lrange(names.INTAKE_QUEUE, 0, -1)]
    assert sorted(queued) == sorted(ids)


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


def test_a_backfill_is_checked_per_candidate() -> None:
    broken = backfill()
    broken["backfill_id"] = "x" * 65
    broken["candidates"][1]["candidate"] = {"first_name": "A"}
    with pytest.raises(InvalidRequest) as refused:
        BACKFILL.envelope(broken)
    assert refused.value.errors == [
        "backfill_id: must be 1-64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit",
        "candidates.1.candidate.last_name: is required (non-blank text)",
        "candidates.1.candidate.email: is required (non-blank text)",
    ]
    with pytest.raises(InvalidRequest, match="candidates: must be a non-empty list"):
        BACKFILL.envelope({**backfill(), "candidates": []})


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
