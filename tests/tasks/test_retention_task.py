"""The retention task: a thin wrapper that runs services.retention.run_retention under a lock, hourly from beat."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

import tasks.maintenance as maintenance
from config import load_settings
from config.names import RETENTION_LOCK_KEY, RETENTION_TASK, TASK_ARGUMENTS
from services.retention import PurgeCounts
from tests.tasks.fake_runtime import install_fake_runtime
from worker.app import RETENTION_INTERVAL, create_app


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    return install_fake_runtime(
        monkeypatch, maintenance, environ={"PERSONIO_SYNC_RETENTION_DAYS": "14"}, email_digests=object(), events_for=lambda session: object()
    )


def test_the_task_runs_the_purge_with_the_configured_retention_and_returns_counts(runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def run_retention(unit_of_work: Any, **options: Any) -> PurgeCounts:
        calls.append({"unit_of_work": unit_of_work, **options})
        return PurgeCounts(uploads=3, documents=2, document_bytes=2048, claims=1)

    monkeypatch.setattr(maintenance, "run_retention", run_retention)

    runtime.redis.xadd(runtime.settings.events_stream, {"type": "upload.finished"}, id="1000-0")  # from 1970: past any retention
    runtime.redis.xadd(runtime.settings.events_stream, {"type": "upload.finished"})  # now

    assert maintenance.purge_personal_data.run() == {"uploads": 3, "documents": 2, "document_bytes": 2048, "claims": 1, "stream_events": 1}

    assert len(calls) == 1
    assert calls[0]["unit_of_work"] is runtime.session and calls[0]["retention"] == timedelta(days=14)
    assert calls[0]["digests"] is runtime.email_digests
    assert not runtime.redis.exists(RETENTION_LOCK_KEY)  # released
    assert runtime.redis.xlen(runtime.settings.events_stream) == 1


def test_a_second_run_while_one_is_running_is_skipped(runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maintenance, "run_retention", lambda *a, **k: pytest.fail("ran although another run holds the lock"))
    runtime.redis.set(RETENTION_LOCK_KEY, "another-run")

    assert maintenance.purge_personal_data.run() == {**PurgeCounts().as_dict(), "stream_events": 0}


def test_beat_runs_the_purge_hourly_and_it_takes_no_arguments() -> None:
    entry = create_app(load_settings({})).conf.beat_schedule["purge-personal-data"]

    assert entry["task"] == RETENTION_TASK and entry["schedule"] == RETENTION_INTERVAL == 3600.0
    assert TASK_ARGUMENTS[RETENTION_TASK] == ()
