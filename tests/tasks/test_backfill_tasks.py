"""tasks.backfills with stubs: a chunk before its start is retried, then refused; intake dispatches."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import tasks.backfills as backfill_tasks
from config import load_settings
from services.backfill import BackfillNotStarted, ChunkResult
from services.events import ListPublisher
from tests.tasks.fake_runtime import install_fake_runtime


class Retried(Exception):
    pass


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    events = ListPublisher()
    fake = install_fake_runtime(monkeypatch, backfill_tasks, events_for=lambda session: events, events=events, intake_policy=lambda: object())
    monkeypatch.setattr(backfill_tasks.add_to_backfill_task, "retry", lambda countdown: Retried(countdown))
    return fake


def not_started(*args: Any, **kwargs: Any) -> None:
    raise BackfillNotStarted("bf-1")


def test_a_chunk_before_its_start_is_retried(runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backfill_tasks, "add_to_backfill", not_started)

    with pytest.raises(Retried):
        backfill_tasks.add_to_backfill_task.run({"backfill_id": "bf-1", "chunk_index": 0, "candidates": []})
    assert runtime.events.events == []


def test_a_chunk_whose_start_never_comes_is_refused_with_an_event(runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backfill_tasks, "add_to_backfill", not_started)
    task = backfill_tasks.add_to_backfill_task
    task.push_request(retries=backfill_tasks.NOT_STARTED_RETRIES)
    try:
        task.run({"backfill_id": "bf-1", "chunk_index": 0, "candidates": []})
    finally:
        task.pop_request()

    [event] = runtime.events.events
    assert event["type"] == "backfill.refused" and event["backfill_id"] == "bf-1"
    assert "send start_backfill first" in event["errors"][0]


def test_a_recorded_chunk_dispatches_its_company_and_a_duplicate_does_not(runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    dispatched: list[int] = []
    monkeypatch.setattr(backfill_tasks, "dispatch_now", lambda connection_id: dispatched.append(connection_id) or 0)
    results = iter([ChunkResult("bf-1", 0, 3, False, 7), ChunkResult("bf-1", 0, 0, True, 7)])
    monkeypatch.setattr(backfill_tasks, "add_to_backfill", lambda *a, **k: next(results))

    backfill_tasks.add_to_backfill_task.run({"backfill_id": "bf-1", "chunk_index": 0, "candidates": []})
    backfill_tasks.add_to_backfill_task.run({"backfill_id": "bf-1", "chunk_index": 0, "candidates": []})

    assert dispatched == [7]


def test_the_company_budget_is_the_limiters(runtime: SimpleNamespace) -> None:
    budget = backfill_tasks.company_budget(load_settings({"PERSONIO_RATE_LIMIT": "20/60s"}))
    assert (budget.requests, budget.period) == (20, 62.0)  # the margin widens the window (period ÷ 30)
