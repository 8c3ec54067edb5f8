"""`personio-sync health` against real processes: no worker, a healthy stack, Redis down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.processes import ProcessSet, beat_command, worker_command
from config import Settings, load_settings
from worker import embedded_redis
from worker.runtime import Runtime

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Settings, ProcessSet]]:
    data_dir = tmp_path_factory.mktemp("health")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(PERSONIO_SYNC_DATA_DIR=str(data_dir), PERSONIO_SYNC_PUMP_INTERVAL="0.5")
    settings = load_settings(env)
    Runtime(settings).prepare()
    group = ProcessSet(env=env, log_dir=data_dir, cwd=ROOT)
    try:
        yield env, settings, group
    finally:
        group.stop(timeout=10)
        embedded_redis.stop(settings.embedded_redis_socket)


def _health(env: dict[str, str], *flags: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "cli.main", "health", "--json", "--timeout", "5", *flags],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout)


def test_health_follows_the_workers_beat_and_redis(system: tuple[dict[str, str], Settings, ProcessSet]) -> None:
    env, settings, group = system

    # Redis and the database up, nothing consuming: alive, not ready.
    code, report = _health(env, "--liveness")
    assert code == 0, report
    assert set(report["checks"]) == {"broker", "database"}
    code, report = _health(env, "--readiness")
    assert code == 2, report
    assert report["checks"]["consumers"]["status"] == "down"
    assert sorted(report["checks"]["consumers"]["not_consumed"]) == sorted(
        ["personio-sync", "personio-sync.interactive", "personio-sync.backfill", "personio-sync.maintenance"])
    assert report["checks"]["beat"]["status"] == "down"
    assert report["checks"]["database"]["status"] == "ok"

    # A worker and beat: ready, and the full check is healthy.
    worker = group.start("worker", worker_command(settings, concurrency=4, loglevel="INFO"))
    worker.wait_for_log(b" ready.", timeout=60)
    group.start("beat", beat_command(settings))
    worker.wait_until(lambda: _health(env, "--readiness")[0] == 0, 60, "become ready")
    code, report = _health(env)
    assert code == 0, report
    assert report["status"] == "ok"
    assert {"broker", "database", "consumers", "beat", "queues", "dead_letters", "connections"} <= set(report["checks"])
    assert report["checks"]["beat"]["lock_held"] is True
    assert report["checks"]["beat"]["pump_sent_age_seconds"] is not None

    # A dead letter makes it degraded, not down.
    runtime = Runtime(settings)
    runtime.redis.lpush("personio-sync", b"\xff not json")
    worker.wait_until(lambda: _health(env)[0] == 1, 30, "report the dead letter")
    assert _health(env, "--readiness")[0] == 0

    # Redis down: down, and said so.
    embedded_redis.stop(settings.embedded_redis_socket)
    code, report = _health(env, "--liveness")
    assert code == 2
    assert report["checks"]["broker"]["status"] == "down"
    code, report = _health(env, "--readiness")
    assert code == 2
    assert report["checks"]["consumers"]["detail"].startswith("not checked")
