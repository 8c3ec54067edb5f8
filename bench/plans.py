"""Query plans of the pump, dispatch and the reconciler on a large backlog: ``python -m bench.plans``.

Seeds ``--queued`` uploads across ``--companies`` companies (as the ``many`` scenario does) into a
fresh PostgreSQL schema (dropped afterwards) or a SQLite file, runs ``ANALYZE``, then captures
every statement that ``due_connections``, ``dispatch_connection`` and ``reclaim_expired_leases``
send and prints its plan as the database executes it (PostgreSQL ``EXPLAIN (ANALYZE, BUFFERS)``,
SQLite ``EXPLAIN QUERY PLAN``), with the former pump query (a GROUP BY over every due upload)
for comparison. tests/services/test_dispatch_plans.py asserts the same on a small database.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine, event, text, update

from bench import seed
from bench.stack import _psycopg_url
from models import Upload, UploadState, utcnow
from models.db import create_db_engine, make_session_factory, migrate
from services.context import UploadPolicy
from services.dispatch import dispatch_connection, due_connections, reclaim_expired_leases
from services.secrets import TokenCipher

FORMER_PUMP_QUERY = (
    "SELECT uploads.connection_id FROM uploads WHERE uploads.state = 'queued' AND uploads.next_attempt_at <= :now "
    "AND uploads.connection_id IS NOT NULL GROUP BY uploads.connection_id LIMIT 10000"
)


class _NoBudgetLimit:
    """A limiter that always has budget, so dispatch runs its full path (the plans are the point)."""

    class _Answer:
        granted, wait, locked_out, remaining = True, 0.0, False, 19

    def peek(self, company: str, endpoint: str = "recruiting") -> Any:
        return self._Answer()

    def try_acquire(self, company: str, endpoint: str = "recruiting") -> Any:
        return self._Answer()

    def lock_out(self, company: str, seconds: float | None = None) -> None:
        return None


def _explain(engine: Engine, statement: str, parameters: Any) -> list[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).all()
            conn.rollback()  # EXPLAIN ANALYZE of an UPDATE runs it
            return [str(row[0]) for row in rows]
        return [str(row[3]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plans", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="postgresql://... (a fresh schema, dropped afterwards); default: a SQLite file")
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--queued", type=int, default=100_000)
    args = parser.parse_args(argv)

    schema = None
    base = args.database_url
    if base and base.startswith("postgresql"):
        import psycopg

        schema = f"bench_plans_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(_psycopg_url(base), autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        url = "postgresql+psycopg://" + base.split("://", 1)[1] + ("&" if "?" in base else "?") + f"options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-plans-')) / 'plans.db'}"
    try:
        migrate(url, Path(tempfile.mkdtemp(prefix="bench-plans-lock-")))
        engine = create_db_engine(url)
        companies = seed.company_configs(args.companies)
        seed.seed_connections(engine, TokenCipher((Fernet.generate_key().decode(),)), companies)
        started = time.monotonic()
        queued = seed.seed_backlog(engine, [(seed.index_of(c), args.queued // args.companies) for c in companies])
        now = utcnow()
        with engine.begin() as conn:
            # A little of everything: uploads in flight (live and expired leases), parked ones.
            for ids, lease_until in ((Upload.id <= args.companies // 2, now + timedelta(minutes=5)), (Upload.id.between(args.companies // 2 + 1, args.companies), now - timedelta(seconds=1))):
                conn.execute(update(Upload).where(ids).values(state=UploadState.SENDING, lease_token="t", lease_until=lease_until))
            conn.execute(text("ANALYZE"))
        print(f"{engine.dialect.name}: {queued:,} uploads queued for {args.companies:,} companies in {time.monotonic() - started:.0f}s\n")

        statements: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
            if not executemany and re.match(r"\s*SELECT\b", statement) and re.search(r"\buploads\b", statement):
                statements.append((statement, parameters))

        sessions = make_session_factory(engine)
        event.listen(engine, "before_cursor_execute", capture)
        timings = {}
        policy = replace(UploadPolicy(), company_concurrency=2)
        for name, work in (
            ("due_connections", lambda s: due_connections(s, now, concurrency=2)),
            ("dispatch_connection", lambda s: dispatch_connection(s, args.companies // 2, policy=policy, limiter=_NoBudgetLimit(), now=now)),
            ("reclaim_expired_leases", lambda s: reclaim_expired_leases(s, now)),
        ):
            with sessions() as session:
                t = time.perf_counter()
                work(session)
                timings[name] = (time.perf_counter() - t) * 1000
                session.rollback()  # leave the data as seeded
        event.remove(engine, "before_cursor_execute", capture)
        print("wall time per call: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items()) + "\n")
        postgres = engine.dialect.name == "postgresql"
        former = FORMER_PUMP_QUERY.replace(":now", "%(now)s" if postgres else "?")
        params: Any = {"now": now} if postgres else (now.isoformat(sep=" "),)
        for label, statement, parameters in [*(("", s, p) for s, p in statements), ("former pump query (before issue 12)", former, params)]:
            print("--", label or " ".join(statement.split())[:160])
            print("\n".join("   " + line for line in _explain(engine, statement, parameters)))
            print()
        engine.dispose()
    finally:
        if schema is not None:
            import psycopg

            with psycopg.connect(_psycopg_url(base), autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return 0


if __name__ == "__main__":
    sys.exit(main())
