"""The task wrappers with stubs: what each task calls, and what it sends on, without a worker.

Each task is a thin wrapper over a service function; here the services and the follow-up
sends are replaced by recorders (the real services have their own tests, and the tasks run
for real in tests/integration).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import tasks.dispatching as dispatching
import tasks.maintenance as maintenance
import tasks.uploads as upload_tasks
from config.names import (
    BACKFILL_QUEUE,
    DISPATCH_CONNECTION_TASK,
    INTERACTIVE_QUEUE,
    PROCESS_UPLOAD_TASK,
    PUMP_LOCK_KEY,
    WAKE_KEY,
)
from models import Priority
from services.dispatch import Claimed, DispatchResult
from services.processing import StepOutcome, StepResult
from tests.tasks.fake_runtime import install_fake_runtime


class _App:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def send_task(self, name: str, args: tuple[Any, ...] = (), **options: Any) -> None:
        self.sent.append((name, tuple(args), options))


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> _App:
    fake = _App()
    monkeypatch.setattr(dispatching, "get_app", lambda: fake)
    return fake


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    return install_fake_runtime(
        monkeypatch,
        dispatching,
        maintenance,
        upload_tasks,
        environ={"PERSONIO_SYNC_PUMP_INTERVAL": "2"},
        upload_policy=SimpleNamespace(company_concurrency=2, budget_per_second=10.0),
        limiter=object(),
        latency=object(),
        deps=lambda session, wake: SimpleNamespace(wake=wake),
    )


def test_dispatch_sends_each_claim_to_its_priority_queue_and_sets_a_wake_up(
    runtime: SimpleNamespace, app: _App, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimed = [Claimed(upload_id=1, lease_token="a", priority=Priority.INTERACTIVE, connection_id=7), Claimed(upload_id=2, lease_token="b", priority=Priority.BACKFILL, connection_id=7)]
    monkeypatch.setattr(dispatching, "dispatch_connection", lambda *a, **k: DispatchResult(claimed=claimed, wake_in=0.5))

    assert dispatching.dispatch_now(7) == 2

    assert app.sent == [
        (PROCESS_UPLOAD_TASK, (1, "a"), {"queue": INTERACTIVE_QUEUE}),
        (PROCESS_UPLOAD_TASK, (2, "b"), {"queue": BACKFILL_QUEUE}),
        (DISPATCH_CONNECTION_TASK, (7,), {"countdown": 0.5}),
    ]


def test_the_earliest_wake_up_timer_per_connection_and_none_beyond_the_budget_window(runtime: SimpleNamespace, app: _App) -> None:
    dispatching.wake(7, 0.5)
    dispatching.wake(7, 0.9)  # a timer due earlier is already set
    dispatching.wake(7, 0.2)  # earlier than the one set: one more timer
    dispatching.wake(8, 5.0)  # a wait for the budget (window 60 s + 2 s margin): its own timer
    dispatching.wake(9, 120.0)  # longer than the window: the pump picks it up
    assert app.sent == [
        (DISPATCH_CONNECTION_TASK, (7,), {"countdown": 0.5}),
        (DISPATCH_CONNECTION_TASK, (7,), {"countdown": 0.2}),
        (DISPATCH_CONNECTION_TASK, (8,), {"countdown": 5.0}),
    ]
    assert runtime.redis.exists(WAKE_KEY.format(connection_id=7))


def test_the_dispatch_task_clears_its_timer_then_dispatches(runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.redis.set(WAKE_KEY.format(connection_id=7), "1")
    dispatched: list[int] = []
    monkeypatch.setattr(maintenance, "dispatch_now", lambda connection_id: dispatched.append(connection_id) or 0)
    maintenance.dispatch_connection_task.run(7)
    assert dispatched == [7]
    assert not runtime.redis.exists(WAKE_KEY.format(connection_id=7))


def test_the_pump_dispatches_every_due_connection_once_and_skips_while_another_runs(
    runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "due_connections", lambda session, now, **bounds: [3, 5])
    dispatched: list[int] = []
    monkeypatch.setattr(maintenance, "dispatch_now", lambda connection_id: dispatched.append(connection_id) or 1)

    assert maintenance.pump.run() == 2
    assert dispatched == [3, 5]

    lock = runtime.redis.lock(PUMP_LOCK_KEY, timeout=10)
    assert lock.acquire(blocking=False)
    assert maintenance.pump.run() == 0  # the previous tick still runs: skipped
    assert dispatched == [3, 5]


@pytest.mark.parametrize(
    ("result", "woken", "dispatched"),
    [
        (StepResult(StepOutcome.FINISHED, 4), [], [4]),
        (StepResult(StepOutcome.PARKED, 4, wake_in=0.3), [(4, 0.3)], [4]),
        (StepResult(StepOutcome.STALE, None), [], []),
    ],
)
def test_a_step_wakes_its_company_when_asked_and_dispatches_the_next(
    runtime: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, result: StepResult, woken: list[tuple[int, float]], dispatched: list[int]
) -> None:
    calls: dict[str, list[Any]] = {"wake": [], "dispatch": [], "step": []}
    monkeypatch.setattr(upload_tasks, "process_upload", lambda session, deps, upload_id, lease: calls["step"].append((upload_id, lease)) or result)
    monkeypatch.setattr(upload_tasks, "wake", lambda connection_id, delay: calls["wake"].append((connection_id, delay)))
    monkeypatch.setattr(upload_tasks, "dispatch_now", lambda connection_id: calls["dispatch"].append(connection_id) or 0)

    upload_tasks.process_upload_task.run(9, "lease")

    assert calls["step"] == [(9, "lease")]
    assert calls["wake"] == woken
    assert calls["dispatch"] == dispatched
