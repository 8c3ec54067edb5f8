"""``personio-sync health``: is the system up, and is it doing its work?

Checks, each ``ok``, ``degraded`` or ``down``:

* ``broker`` — Redis answers ``PING`` (liveness);
* ``database`` — the database answers; for readiness its schema is at the newest migration;
* ``consumers`` — for every queue a worker actually **takes a message from it**: a ping task sent
  to each queue must come back (through Redis) within the timeout. A worker process that is
  alive but stopped consuming after a Redis reconnect answers ``celery inspect ping`` and still
  fails this (readiness);
* ``beat`` — the pump ran recently (beat sends it every ``PERSONIO_SYNC_PUMP_INTERVAL``; a worker
  notes each run in Redis): older than five intervals (at least 30 s) is down (readiness);
* ``queues``, ``dead_letters``, ``connections`` — depths for the record; dead letters waiting or
  connections in a bad health state make the system ``degraded`` (the full check only).

Exit code: 0 healthy, 1 degraded, 2 down. Nothing here starts or migrates anything.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis
from sqlalchemy import func, select, text

from config import Settings
from config.names import (
    ALL_QUEUES,
    DEAD_LETTERS_KEY,
    HEARTBEATS_KEY,
    PING_KEY,
    PING_TASK,
    PUMP_TASK,
    REDBEAT_PREFIX,
)
from models import Connection, Health

Status = Literal["ok", "degraded", "down"]
Mode = Literal["liveness", "readiness", "full"]
_RANK = {"ok": 0, "degraded": 1, "down": 2}


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class HealthReport:
    mode: Mode
    checks: list[Check]

    @property
    def status(self) -> Status:
        return max((check.status for check in self.checks), key=_RANK.__getitem__, default="ok")

    @property
    def exit_code(self) -> int:
        return _RANK[self.status]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "mode": self.mode,
            "checks": {check.name: {"status": check.status, "detail": check.detail, **check.data} for check in self.checks},
        }

    def text(self) -> str:
        mark = {"ok": "✓", "degraded": "!", "down": "✗"}
        lines = [f"{mark[check.status]} {check.name}: {check.detail}" for check in self.checks]
        return "\n".join([*lines, f"{self.status} ({self.mode})"])


def beat_stale_after(settings: Settings) -> float:
    """Seconds without a pump after which beat counts as down."""
    return max(settings.pump_interval * 5, 30.0)


def check_health(
    settings: Settings,
    *,
    mode: Mode = "full",
    timeout: float = 10.0,
    send_ping: Callable[[str, str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> HealthReport:
    """Run the checks of ``mode``; ``send_ping(token, queue)`` sends the ping task (default: through the app)."""
    checks: list[Check] = []
    client = redis.Redis.from_url(settings.redis_client_url, decode_responses=True, socket_connect_timeout=min(timeout, 3.0),
                                  socket_timeout=min(timeout, 5.0))
    try:
        broker = _broker(client)
        checks.append(broker)
        checks.extend(_database(settings, readiness=mode != "liveness"))
        if mode == "liveness":
            return HealthReport(mode, checks)
        if broker.status == "down":
            checks.append(Check("consumers", "down", "not checked: Redis does not answer"))
            checks.append(Check("beat", "down", "not checked: Redis does not answer"))
            return HealthReport(mode, checks)
        checks.append(_consumers(client, timeout, send_ping or _send_ping))
        checks.append(_beat(client, settings, clock))
        if mode == "full":
            checks.extend(_backlog(client))
            connections = next((c for c in checks if c.name == "database"), None)
            if connections is not None and connections.status != "down":
                checks.append(_connections(settings))
        return HealthReport(mode, checks)
    finally:
        client.close()


def _broker(client: redis.Redis) -> Check:
    try:
        started = time.monotonic()
        client.ping()
    except (redis.RedisError, OSError) as error:
        return Check("broker", "down", f"Redis does not answer ({type(error).__name__}); check REDIS_URL and that Redis runs")
    return Check("broker", "ok", f"Redis answers ({(time.monotonic() - started) * 1000:.0f} ms)")


def _database(settings: Settings, *, readiness: bool) -> list[Check]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from models.db import alembic_config, create_db_engine

    engine = create_db_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            if not readiness:
                return [Check("database", "ok", "the database answers")]
            current = set(MigrationContext.configure(connection).get_current_heads())
        heads = set(ScriptDirectory.from_config(alembic_config(settings.database_url)).get_heads())
    except Exception as error:  # noqa: BLE001 - any driver's error means the same to an operator
        return [Check("database", "down", f"the database does not answer ({type(error).__name__}); check DATABASE_URL")]
    finally:
        engine.dispose()
    if current != heads:
        return [Check("database", "down", f"schema at {sorted(current) or 'nothing'}, newest is {sorted(heads)}: run personio-sync migrate",
                      {"revision": sorted(current), "head": sorted(heads)})]
    return [Check("database", "ok", f"the database answers; schema at the newest migration ({', '.join(sorted(heads))})",
                  {"revision": sorted(current)})]


def _send_ping(token: str, queue: str) -> None:
    from worker.app import get_app

    get_app().send_task(PING_TASK, args=(token, queue), queue=queue, expires=60, retry=False)


def _consumers(client: redis.Redis, timeout: float, send_ping: Callable[[str, str], None]) -> Check:
    """Send one ping per queue; a queue whose ping no worker took within ``timeout`` is not consumed."""
    tokens = {queue: uuid.uuid4().hex for queue in ALL_QUEUES}
    started = time.monotonic()
    try:
        for queue, token in tokens.items():
            send_ping(token, queue)
    except Exception as error:  # noqa: BLE001 - a failed send is a failed check
        return Check("consumers", "down", f"could not send the ping task ({type(error).__name__})")
    answered: dict[str, float] = {}
    deadline = started + timeout
    while len(answered) < len(tokens) and time.monotonic() < deadline:
        for queue, token in tokens.items():
            if queue not in answered and client.exists(PING_KEY.format(token=token)):
                answered[queue] = round(time.monotonic() - started, 3)
        if len(answered) < len(tokens):
            time.sleep(0.05)
    client.delete(*(PING_KEY.format(token=token) for token in tokens.values()))
    silent = [queue for queue in ALL_QUEUES if queue not in answered]
    data = {"answered_in_seconds": answered, "not_consumed": silent}
    if silent:
        return Check("consumers", "down", f"no worker took a ping from {', '.join(silent)} within {timeout:g} s "
                     "(no worker running, or it stopped consuming; restart it)", data)
    return Check("consumers", "ok", f"a worker consumes every queue (slowest ping {max(answered.values()):.2f} s)", data)


def _beat(client: redis.Redis, settings: Settings, clock: Callable[[], float]) -> Check:
    """The pump's last run (noted by the worker that ran it), and what beat itself says about it."""
    last = cast(str | None, client.hget(HEARTBEATS_KEY, PUMP_TASK))
    limit = beat_stale_after(settings)
    sent_age = _beat_sent_age(client, clock)
    data: dict[str, Any] = {
        "pump_age_seconds": None if last is None else round(max(clock() - float(last), 0.0), 1),
        "pump_sent_age_seconds": None if sent_age is None else round(sent_age, 1),
        "lock_held": bool(client.exists(f"{REDBEAT_PREFIX}:lock")),
    }
    age = data["pump_age_seconds"]
    if age is not None and age <= limit:
        return Check("beat", "ok", f"the pump ran {age:.1f} s ago", data)
    ran = "never ran" if age is None else f"last ran {age:.0f} s ago (expected every {settings.pump_interval:g} s)"
    if sent_age is not None and sent_age <= limit:
        return Check("beat", "down", f"the pump {ran}, although beat sent it {sent_age:.0f} s ago: "
                     "no worker runs the maintenance queue", data)
    return Check("beat", "down", f"the pump {ran}: is beat running (personio-sync beat)?", data)


def _beat_sent_age(client: redis.Redis, clock: Callable[[], float]) -> float | None:
    """Seconds since beat last sent the pump (RedBeat's own record), or None."""
    try:
        import json

        from redbeat.decoder import RedBeatJSONDecoder

        meta = cast(str | None, client.hget(f"{REDBEAT_PREFIX}pump", "meta"))
        last_run = json.loads(meta, cls=RedBeatJSONDecoder).get("last_run_at") if meta else None
        return None if last_run is None else max(clock() - last_run.timestamp(), 0.0)
    except (ValueError, TypeError, AttributeError, ImportError):
        return None


def _backlog(client: redis.Redis) -> list[Check]:
    from worker.metrics import queue_depths

    depths = queue_depths(client)
    dead = cast(int, client.llen(DEAD_LETTERS_KEY))
    checks = [Check("queues", "ok", ", ".join(f"{queue} {n}" for queue, n in depths.items()), {"depths": depths})]
    if dead:
        checks.append(Check("dead_letters", "degraded", f"{dead} message(s) in the dead letters: personio-sync dead-letters", {"count": dead}))
    else:
        checks.append(Check("dead_letters", "ok", "none", {"count": 0}))
    return checks


def _connections(settings: Settings) -> Check:
    from sqlalchemy.orm import Session

    from models.db import create_db_engine

    engine = create_db_engine(settings.database_url)
    try:
        with Session(engine) as session:
            rows = dict(session.execute(select(Connection.health, func.count()).group_by(Connection.health)).tuples().all())
    except Exception as error:  # noqa: BLE001
        return Check("connections", "down", f"could not read the connections ({type(error).__name__})")
    finally:
        engine.dispose()
    counts = {str(health): int(n) for health, n in rows.items()}
    bad = {health: n for health, n in counts.items() if health not in (Health.HEALTHY, Health.UNCHECKED)}
    if bad:
        return Check("connections", "degraded", "in a bad health state: " + ", ".join(f"{n} {health}" for health, n in sorted(bad.items()))
                     + " (personio-sync connections)", {"by_health": counts})
    return Check("connections", "ok", f"{sum(counts.values())} connection(s), none in a bad state", {"by_health": counts})
