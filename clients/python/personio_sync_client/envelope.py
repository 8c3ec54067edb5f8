"""Celery protocol-2 messages as kombu's Redis transport stores them, built without Celery.

Byte for byte the shape ``Celery.send_task`` pushes with the JSON serializer (personio-sync's
worker checks every field of it before a task runs; see its ``worker/transport.py``).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def build_message(task: str, args: Sequence[Any], *, queue: str, argsrepr: str, task_id: str | None = None) -> tuple[str, str]:
    """The JSON envelope for ``task(*args)`` on ``queue``, and its task id.

    ``argsrepr`` is what Flower and worker logs show instead of the arguments: ids only, never
    candidate data. Raises ``TypeError``/``ValueError`` when ``args`` are not JSON values.
    """
    task_id = task_id or str(uuid.uuid4())
    # allow_nan=False: NaN/Infinity are not JSON; ensure_ascii (as kombu) keeps any text,
    # even a lone surrogate, encodable.
    body = json.dumps([list(args), {}, _EMBED], allow_nan=False)
    envelope = {
        "body": base64.b64encode(body.encode("utf-8")).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": argsrepr,
            "kwargsrepr": "{}",
            "origin": _ORIGIN,
            "ignore_result": None,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope), task_id
