"""The runtime relays a task's events right after its commit; beat relays what that missed."""

from __future__ import annotations

import fakeredis
import pytest
from sqlalchemy import Engine, select

from config import load_settings
from models import OutboxEvent
from worker.app import create_app
from worker.runtime import Runtime


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def runtime(engine: Engine, server: fakeredis.FakeServer) -> Runtime:
    runtime = Runtime(load_settings({}))
    runtime.__dict__["engine"] = engine
    runtime.__dict__["redis"] = fakeredis.FakeRedis(server=server, decode_responses=True)
    return runtime


def publish(runtime: Runtime, request_id: str) -> None:
    """What a task does: publish into its session, commit the state change, close."""
    with runtime.session() as session:
        runtime.events_for(session).publish({"type": "upload.finished", "request_id": request_id, "outcome": "submitted"})
        session.commit()


def streamed(runtime: Runtime) -> list[str]:
    return [fields["request_id"] for _, fields in runtime.redis.xrange(runtime.settings.events_stream)]


def pending(runtime: Runtime) -> int:
    with runtime.session() as session:
        return len(session.scalars(select(OutboxEvent)).all())


def test_events_reach_the_stream_when_the_tasks_session_closes(runtime: Runtime) -> None:
    publish(runtime, "req-1")

    [(_, fields)] = runtime.redis.xrange(runtime.settings.events_stream)
    assert fields["request_id"] == "req-1" and fields["event_id"]
    assert pending(runtime) == 0


def test_a_rolled_back_session_publishes_nothing(runtime: Runtime) -> None:
    with pytest.raises(RuntimeError), runtime.session() as session:
        runtime.events_for(session).publish({"type": "upload.finished", "request_id": "req-1", "outcome": "submitted"})
        raise RuntimeError("the step failed before its commit")

    assert streamed(runtime) == []
    assert pending(runtime) == 0


def test_redis_down_after_the_commit_is_no_error_and_beat_relays_later(
    runtime: Runtime, server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: Redis is down when the task commits its outcome
    server.connected = False
    publish(runtime, "req-1")  # no exception: the event waits in the outbox
    assert pending(runtime) == 1

    # when: Redis is back and beat's relay runs
    server.connected = True
    import tasks.maintenance

    monkeypatch.setattr(tasks.maintenance, "get_runtime", lambda: runtime)
    assert tasks.maintenance.relay_events.run() == 1

    # then
    assert streamed(runtime) == ["req-1"]
    assert pending(runtime) == 0


def test_beat_runs_the_relay_every_few_seconds_and_drops_stale_ticks() -> None:
    settings = load_settings({"PERSONIO_SYNC_EVENTS_RELAY_INTERVAL": "3"})
    entry = create_app(settings).conf.beat_schedule["relay-events"]
    assert entry["task"] == "personio_sync.relay_events"
    assert entry["schedule"] == 3.0
    assert entry["options"]["expires"] == 6.0
