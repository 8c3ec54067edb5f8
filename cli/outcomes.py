"""Waiting for an upload's outcome (the CLI's ``upload --wait`` and the demo)."""

from __future__ import annotations

import time
from typing import Any

from worker.runtime import Runtime


def wait_for_outcome(runtime: Runtime, request_id: str, *, timeout: float) -> dict[str, Any] | None:
    from services.uploads import upload_status

    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        with runtime.session() as session:
            status = upload_status(session, request_id)
        if status and status["terminal"]:
            return status
        time.sleep(0.2)
    return status
