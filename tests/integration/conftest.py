"""A real stack for integration tests: Redis (embedded, or REDIS_URL), the database
(SQLite, or DATABASE_URL), the Personio stand-in over HTTP, and real Celery worker and
beat processes started exactly as production starts them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from cli.processes import ProcessSet, beat_command, worker_command
from config import load_settings
from sandbox import CompanyConfig, JobConfig, SandboxConfig, start_sandbox
from services.connect import ConnectRequest
from services.connections import find_connection, link_project
from services.uploads import upload_status
from tasks.producer import send_upload_request
from worker.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

COMPANY_A = CompanyConfig(company_id=1000, access_token="secret-token-A-canary-7f3a", domain="alpha.jobs.personio.de",
                          jobs=[JobConfig(id=101, name="Backend Engineer"), JobConfig(id=102, name="Designer")], channel_ids=[77])
COMPANY_B = CompanyConfig(company_id=2000, access_token="secret-token-B-canary-91c2", domain="beta.jobs.personio.com",
                          jobs=[JobConfig(id=201, name="Sales Lead")])


@dataclass
class Stack:
    runtime: Runtime
    sandbox: Any
    env: dict[str, str]
    data_dir: Path
    group: ProcessSet = field(init=False)

    def __post_init__(self) -> None:
        self.group = ProcessSet(env=self.env, log_dir=self.data_dir, cwd=ROOT)

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [child.popen for child in self.group.children.values()]

    def send(self, request: dict[str, Any]) -> None:
        send_upload_request(request, broker_url=self.runtime.settings.broker_url)

    def wait_terminal(self, request_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            with self.runtime.session() as session:
                status = upload_status(session, request_id)
            if status and status["terminal"]:
                return status
            time.sleep(0.1)
        raise AssertionError(f"{request_id} not terminal after {timeout}s: {status}")

    def start_worker(self, name: str, command: list[str] | None = None) -> subprocess.Popen[bytes]:
        """Start a worker (``personio-sync worker``'s command unless ``command`` is given)."""
        if command is None:
            command = worker_command(self.runtime.settings, concurrency=8, loglevel="INFO")
            command[command.index("--hostname") + 1] = f"{name}@%h"
        worker = self.group.start(name, command)
        worker.wait_for_log(b" ready.", timeout=60)
        return worker.popen

    def start_beat(self, name: str = "beat") -> None:
        self.group.start(name, beat_command(self.runtime.settings))

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.data_dir.glob("*.log"))


def candidate(email: str, **extra: Any) -> dict[str, Any]:
    return {"first_name": "Alex", "last_name": "Example", "email": email, **extra}


def new_id() -> str:
    return "it-" + uuid.uuid4().hex


def _fresh_postgres_database(url: str) -> str:
    """A database of its own next to DATABASE_URL's, so unit tests' tables are never touched."""
    from sqlalchemy import create_engine, make_url, text

    target = make_url(url).set(database=make_url(url).database + "_integration")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    engine.dispose()
    return target.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("stack")
    sandbox = start_sandbox(SandboxConfig(companies=[COMPANY_A, COMPANY_B], rate_limit=10, rate_window=1.0, lockout=1.0))
    env = {
        **os.environ,
        "PERSONIO_SYNC_DATA_DIR": str(data_dir),
        "PERSONIO_API_URL": sandbox.url,
        "PERSONIO_FEED_URL": sandbox.feed_url_template,
        "PERSONIO_RATE_LIMIT": "10/1s",
        "PERSONIO_SYNC_PUMP_INTERVAL": "0.3",
        "PERSONIO_SYNC_RECONCILE_INTERVAL": "1",
        "PERSONIO_SYNC_LEASE": "20",
        "PERSONIO_SYNC_BACKOFF_BASE": "0.2",
        "PERSONIO_SYNC_BACKOFF_CAP": "2",
        "PERSONIO_HTTP_READ_TIMEOUT": "5",
    }
    if os.environ.get("REDIS_URL"):
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        env["DATABASE_URL"] = _fresh_postgres_database(load_settings(env).database_url)
    settings = load_settings(env)
    runtime = Runtime(settings)
    runtime.prepare()
    stack = Stack(runtime=runtime, sandbox=sandbox, env=env, data_dir=data_dir)
    try:
        stack.start_worker("w1")
        stack.start_beat()
        for company, account, project, job in ((COMPANY_A, "acct-a", "proj-a", 101), (COMPANY_B, "acct-b", "proj-b", 201)):
            report = runtime.connect(
                ConnectRequest(account_id=account, company_id=str(company.company_id), access_token=company.access_token,
                               domain=company.domain, channel_id="77" if company is COMPANY_A else None)
            )
            assert report.saved, report.checks
            with runtime.session() as session:
                connection = find_connection(session, account)
                assert connection is not None
                link_project(session, connection, project, job, now=__import__("models").utcnow(), require_cached=True)
        yield stack
    finally:
        stack.group.stop(timeout=20)
        sandbox.stop()
        if settings.embedded_redis:
            from worker import embedded_redis

            embedded_redis.stop(settings.embedded_redis_socket)


def redis_values(client: redis.Redis, *, skip: Callable[[str], bool] = lambda key: False) -> Iterator[tuple[str, str]]:
    """Every (key, value) stored in Redis, as text, for canary checks; ``skip`` leaves keys out."""
    for key in client.scan_iter(count=1000):
        if skip(key):
            continue
        kind = client.type(key)
        if kind == "string":
            values = [client.get(key) or ""]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = list(client.hgetall(key).values())
        elif kind == "stream":
            values = [json.dumps(fields) for _, fields in client.xrange(key)]
        elif kind == "zset":
            values = list(client.zrange(key, 0, -1))
        elif kind == "set":
            values = list(client.smembers(key))
        else:
            values = []
        for value in values:
            yield key, str(value)
