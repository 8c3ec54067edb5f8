"""Raw items a producer could push onto our queues, each with why it must be refused.

Shared by the transport's unit tests and the integration test against a real worker.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

NESTED = "[" * 5000 + "]" * 5000
_DELETE = object()
_DELETE_BODY = object()


def envelope(args: list[Any] | None = None, *, task: str = "personio_sync.upload_candidate", body: Any = None, **changes: Any) -> dict[str, Any]:
    """A valid Celery protocol 2 envelope (the README's recipe), with ``changes`` applied."""
    task_id = str(uuid.uuid4())
    if body is None:
        body = [args if args is not None else [{"request_id": "r-1"}], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    message: dict[str, Any] = {
        "body": body if isinstance(body, str) or body is _DELETE_BODY else base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None, "group": None,
                    "retries": 0, "eta": None, "expires": None, "argsrepr": "[<upload request>]", "kwargsrepr": "{}"},
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "personio-sync"}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    }
    if body is _DELETE_BODY:
        del message["body"]
    for path, value in changes.items():
        target = message
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return message




def _raw(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# (name, raw bytes, a phrase the dead letter's reason contains)
POISON: list[tuple[str, bytes, str]] = [
    ("not JSON", b"not JSON", "not JSON"),
    ("empty", b"", "empty"),
    ("only spaces", b"   ", "empty"),
    ("binary", b"\xff\xfe\x00\x01garbage", "not UTF-8"),
    ("JSON array", b"[1, 2]", "not an object"),
    ("JSON number", b"42", "not an object"),
    ("JSON null", b"null", "not an object"),
    ("JSON string", b'"hello"', "not an object"),
    ("JSON true", b"true", "not an object"),
    ("nested 5,000 deep", NESTED.encode(), "nests deeper"),
    ("object nested 5,000 deep", ('{"a":' * 5000 + "1" + "}" * 5000).encode(), "nests deeper"),
    ("truncated JSON", _raw(envelope())[:-10], "not JSON"),
    ("body missing", _raw(envelope(body=_DELETE_BODY)), "body is missing"),
    ("body not a string", _raw({**envelope(), "body": 12}), "body is a number"),
    ("body not base64", _raw(envelope(body="%%% not base64 %%%")), "not valid base64"),
    ("body base64 but not JSON", _raw(envelope(body=_b64(b"hello world"))), "body is not JSON"),
    ("body base64 of binary", _raw(envelope(body=_b64(b"\xff\xfe\xfd"))), "body is not UTF-8"),
    ("body nested 5,000 deep", _raw(envelope(body=_b64(NESTED.encode()))), "nests deeper"),
    ("body an object", _raw(envelope(body={"args": []})), "[args, kwargs, embed]"),
    ("body two elements", _raw(envelope(body=[[{}], {}])), "[args, kwargs, embed]"),
    ("body args not a list", _raw(envelope(body=[{}, {}, {}])), "[args, kwargs, embed]"),
    ("unknown body_encoding", _raw(envelope(properties__body_encoding="rot13")), "body_encoding"),
    ("no body_encoding", _raw(envelope(properties__body_encoding=_DELETE)), "body_encoding"),
    ("headers a list", _raw(envelope(headers=["task", "id"])), "headers is an array"),
    ("headers missing", _raw(envelope(headers=_DELETE)), "headers is missing"),
    ("properties missing", _raw(envelope(properties=_DELETE)), "properties is missing"),
    ("properties a string", _raw(envelope(properties="x")), "properties is a string"),
    ("no id header", _raw(envelope(headers__id=_DELETE)), "headers.id"),
    ("empty id header", _raw(envelope(headers__id="")), "headers.id"),
    ("no task header (protocol 1)", _raw(envelope(headers__task=_DELETE)), "headers.task is missing"),
    ("unknown task", _raw(envelope(task="tasks.delete_everything")), "names no task"),
    ("no delivery_tag", _raw(envelope(properties__delivery_tag=_DELETE)), "delivery_tag"),
    ("numeric delivery_tag", _raw(envelope(properties__delivery_tag=7)), "delivery_tag"),
    ("no delivery_info", _raw(envelope(properties__delivery_info=_DELETE)), "delivery_info"),
    ("delivery_info without routing_key", _raw(envelope(properties__delivery_info={"exchange": ""})), "routing_key"),
    ("priority a string", _raw(envelope(properties__priority="high")), "priority"),
    ("pickle content-type", _raw(envelope(**{"content-type": "application/x-python-serialize"})), "content-type"),
    ("compressed", _raw(envelope(headers__compression="application/x-gzip")), "compressed"),
    ("eta not a time", _raw(envelope(headers__eta="tomorrow")), "headers.eta"),
    ("expires a number", _raw(envelope(headers__expires=12)), "headers.expires"),
    ("retries negative", _raw(envelope(headers__retries=-1)), "retries"),
    ("timelimit a string", _raw(envelope(headers__timelimit="60")), "timelimit"),
    ("upload without argument", _raw(envelope([])), "takes 1 argument"),
    ("upload with two arguments", _raw(envelope([{}, {}])), "takes 1 argument"),
    ("keyword arguments", _raw(envelope(body=[[{}], {"request": {}}, {}])), "no keyword arguments"),
    ("chained canvas", _raw(envelope(body=[[{}], {}, {"chain": [{"task": "x"}]}])), "embed.chain"),
    ("process_upload with a string id", _raw(envelope(["1", "lease"], task="personio_sync.process_upload")), "must be int"),
    ("process_upload with a boolean id", _raw(envelope([True, "lease"], task="personio_sync.process_upload")), "must be int"),
    ("pump with an argument", _raw(envelope([1], task="personio_sync.pump")), "takes 0 argument"),
]
