"""Engine, sessions and migrations.

Sessions are opened by the caller (a task wrapper, the CLI, a test) and passed to the
service functions, which never create their own: whoever opens a session owns its
transaction, and one service call never commits half of another's work.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def create_db_engine(database_url: str, **kwargs: Any) -> Engine:
    """Create the engine, with SQLite tuned for several worker threads and processes."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Enough pooled connections for a thread-pool worker (32 threads plus dispatch).
        kwargs.setdefault("pool_size", 40)
        kwargs.setdefault("max_overflow", 20)
        # hide_parameters: a database error's text never carries the values (candidate data)
        # into logs, task results or Flower.
        engine = create_engine(database_url, connect_args={"timeout": 30, "check_same_thread": False}, hide_parameters=True, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers proceed while a worker writes; busy_timeout makes writers
            # queue instead of failing with "database is locked".
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # pysqlite's own transaction handling must be off for our BEGIN below to count.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn: Any) -> None:
            # Take the write lock at BEGIN so two writers never deadlock on a lock upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 40)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(database_url, pool_pre_ping=True, hide_parameters=True, **kwargs)


def end_transaction(session: Session) -> None:
    """Commit what is pending and end the open transaction, if any.

    The rule for network I/O: a service calls this before every request to Personio, a jobs
    feed or a document host, so no transaction — and on SQLite, whose every transaction here
    holds the single write lock from BEGIN IMMEDIATE — stays open while a remote host answers.
    """
    if session.in_transaction():
        session.commit()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(database_url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@contextlib.contextmanager
def _migration_lock(engine: Engine, lock_dir: Path) -> Iterator[None]:
    """Serialise migrations between processes that start at the same time."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(7346511)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(7346511)"))
                conn.commit()
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "migrate.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(database_url: str, lock_dir: Path) -> None:
    """Bring the database to the newest schema (idempotent, safe to call at every start)."""
    engine = create_engine(database_url)
    try:
        with _migration_lock(engine, lock_dir):
            command.upgrade(alembic_config(database_url), "head")
    finally:
        engine.dispose()
