"""For the main app: send an upload request to personio-sync (Python producers).

Only Celery is needed: no personio-sync settings, database or credentials::

    from tasks.producer import send_upload_request
    send_upload_request({"request_id": "...", "account_id": "...", ...}, broker_url="redis://redis:6379/0")

The request is validated by the worker, not here, so the contract has one owner. The
task's argument is shown redacted in Flower and worker logs (``argsrepr``): candidate data
stays out of them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery

from config.names import BACKFILL_TASK, INTAKE_QUEUE, UPLOAD_TASK

__all__ = ["BACKFILL_TASK", "INTAKE_QUEUE", "UPLOAD_TASK", "send_backfill", "send_upload_request"]


@lru_cache(maxsize=8)
def _producer(broker_url: str) -> Celery:
    app = Celery("personio_sync_producer", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True)
    return app


def _send(task: str, payload: dict[str, Any], summary: str, broker_url: str) -> str:
    """Queue ``task(payload)`` on the intake queue; ``summary`` stands for the payload in logs."""
    result = _producer(broker_url).send_task(
        task, args=[payload], queue=INTAKE_QUEUE, argsrepr=f"[<{summary}>]", kwargsrepr="{}"
    )
    return str(result.id)


def send_upload_request(request: dict[str, Any], *, broker_url: str) -> str:
    """Queue one upload request; returns the Celery message id (track by ``request_id``)."""
    return _send(UPLOAD_TASK, request, f"upload request {request.get('request_id')!s:.128}", broker_url)


def send_backfill(backfill: dict[str, Any], *, broker_url: str) -> str:
    """Queue a backfill: ``{"backfill_id", "account_id", "project_id", "candidates": [...]}``."""
    summary = f"backfill {backfill.get('backfill_id')!s:.64} with {len(backfill.get('candidates') or [])} candidates"
    return _send(BACKFILL_TASK, backfill, summary, broker_url)
