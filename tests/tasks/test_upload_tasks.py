"""The intake task with stubs: no request is acked without a status.

The runtime is replaced by one over the test database and an in-memory event list; the
task's ``retry`` is replaced by a recorder, so what the task asks Celery to do is visible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import tasks.uploads as upload_tasks
from models import UploadState
from services.events import ListPublisher
from services.schemas import IntakePolicy
from services.uploads import upload_status


class _Retry(Exception):
    def __init__(self, countdown: float) -> None:
        self.countdown = countdown


@pytest.fixture
def runtime(session_factory: sessionmaker[Session], intake_policy: IntakePolicy, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    events = ListPublisher()

    @contextlib.contextmanager
    def session() -> Iterator[Session]:
        with session_factory.begin() as s:  # commits on success, as Runtime.session does
            yield s

    fake = SimpleNamespace(session=session, intake_policy=lambda: intake_policy, events_for=lambda _s: events, events=events)
    monkeypatch.setattr(upload_tasks, "get_runtime", lambda: fake)
    monkeypatch.setattr(upload_tasks, "dispatch_now", lambda connection_id: 0)

    def retry(countdown: float, **_: Any) -> _Retry:
        return _Retry(countdown)

    monkeypatch.setattr(upload_tasks.upload_candidate, "retry", retry)
    return fake


def _run(request: Any, *, retries: int = 0) -> None:
    task = upload_tasks.upload_candidate
    task.push_request(id="message-1", retries=retries, called_directly=False)
    try:
        task.run(request)
    finally:
        task.pop_request()


REQUEST = {"request_id": "req-task-1", "account_id": "acct", "project_id": "proj",
           "candidate": {"first_name": "A", "last_name": "B", "email": "a@example.org"}}


def test_a_database_outage_is_retried_with_backoff(runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(upload_tasks, "receive_upload", down)
    with pytest.raises(_Retry) as first:
        _run(REQUEST, retries=0)
    with pytest.raises(_Retry) as later:
        _run(REQUEST, retries=10)
    assert first.value.countdown == 1
    assert later.value.countdown == 60  # capped, and never given up: the database comes back


def test_an_unexpected_error_is_retried_then_recorded_as_failed(runtime: SimpleNamespace, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: Any, **kwargs: Any) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(upload_tasks, "receive_upload", bug)
    with pytest.raises(_Retry):
        _run(REQUEST, retries=upload_tasks.INTAKE_RETRIES - 1)

    _run(REQUEST, retries=upload_tasks.INTAKE_RETRIES)

    status = upload_status(session, "req-task-1")
    assert status is not None
    assert status["state"] == UploadState.FAILED.value
    assert status["reason_code"] == "personio-sync.intake-failed"
    assert status["message"]["de"] and status["message"]["en"]
    assert [e["type"] for e in runtime.events.events] == ["upload.finished"]


def test_a_request_is_recorded_normally(runtime: SimpleNamespace, session: Session) -> None:
    _run(REQUEST)
    status = upload_status(session, "req-task-1")
    assert status is not None
    assert status["state"] == UploadState.REJECTED.value  # the account is not connected
    assert status["reason_code"] == "personio-sync.connection-not-found"
