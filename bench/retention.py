"""Personal data over a long run: N uploads with a CV each, through the real stack, then retention.

    .venv/bin/python -m bench.retention --uploads 2000 --companies 40
    .venv/bin/python -m bench.retention --uploads 20 --companies 4     # smoke size (tests/bench)

The backlog is seeded as ``queued`` uploads, each holding one inline CV (as intake records it;
see ``bench/seed.py``), and a real ``personio-sync worker`` and ``beat`` send them to the
Personio stand-in under the time-scaled budget (20 requests per 2 s per company, 2 requests per
upload: at most 5 uploads/s per company). When every upload is finished, the retention purge
runs (``services.retention.run_retention``, with a retention of 0 days so every finished upload
is past it). The benchmark prints the document bytes in the database before sending, after
sending and after retention, the uploads still holding candidate data, and the database size
(with the space SQLite keeps free for reuse, and the size after VACUUM). It asserts nothing:
the smoke test checks the shape of the output.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text, update

from bench import seed
from bench.stack import Backends, BenchError, Budget, Environment
from models import TERMINAL_STATES, Upload, UploadDocument, utcnow

WORKER_CONCURRENCY = 16


def document_bytes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(func.length(UploadDocument.content)), 0))).scalar_one())


def uploads_with_candidate_data(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count(Upload.id)).where(Upload.purged_at.is_(None))).scalar_one())


def unfinished(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count(Upload.id)).where(Upload.state.not_in(TERMINAL_STATES))).scalar_one())


def outcomes(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {str(state): int(count) for state, count in conn.execute(select(Upload.state, func.count(Upload.id)).group_by(Upload.state))}


def database_size(engine: Engine) -> dict[str, int]:
    """Bytes the database takes: SQLite's file and its free pages; PostgreSQL's tables with TOAST and indexes."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            return {"bytes": pages * page_size, "free_bytes": free * page_size}
        size = conn.execute(
            text("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = current_schema()")
        ).scalar_one()
        return {"bytes": int(size), "free_bytes": 0}


def vacuumed_size(engine: Engine) -> int:
    """SQLite's file size after VACUUM (outside the engine: its connections always open a transaction)."""
    engine.dispose()
    with contextlib.closing(sqlite3.connect(str(engine.url.database), isolation_level=None)) as conn:
        conn.execute("VACUUM")
    return database_size(engine)["bytes"]


def run(uploads: int, companies: int, backends: Backends, *, cv_kib: int, timeout: float, keep: bool, log_level: str) -> dict[str, Any]:
    from cli.processes import beat_command, worker_command
    from services.retention import run_retention
    from worker.runtime import Runtime

    configs = seed.company_configs(companies)
    plan = [(seed.index_of(c), uploads // companies + (1 if i < uploads % companies else 0)) for i, c in enumerate(configs)]
    result: dict[str, Any] = {"uploads": uploads, "companies": companies, "backends": backends.describe()}
    with Environment("retention", configs, Budget(), backends, log_level=log_level, keep=keep) as env:
        runtime = Runtime(env.settings)
        runtime.prepare()
        engine = runtime.engine
        seed.seed_connections(engine, runtime.cipher, configs)
        seed.seed_backlog(engine, plan, tag="retention")
        if cv_kib:
            # A CV of a realistic size: the sample PDF, padded after its end (readers ignore that).
            cv = seed.CV + b"\n%" + b"x" * (cv_kib * 1024 - len(seed.CV) - 2)
            with engine.begin() as conn:
                conn.execute(update(UploadDocument).values(content=cv, size=len(cv), sha256=hashlib.sha256(cv).hexdigest()))
        result["cv_bytes"] = max(cv_kib * 1024, len(seed.CV))
        result["document_bytes_queued"] = document_bytes(engine)
        result["database_queued"] = database_size(engine)

        engine.dispose()
        worker = env.start("worker", worker_command(runtime.settings, concurrency=WORKER_CONCURRENCY))
        worker.wait_for_log(b" ready.", timeout=90)
        env.start("beat", beat_command(runtime.settings))
        started = time.monotonic()
        while (left := unfinished(engine)) > 0:
            if time.monotonic() - started > timeout:
                raise BenchError(f"{left} uploads not finished after {timeout:g} s")
            env.sleep(1.0)
        result["send_seconds"] = round(time.monotonic() - started, 1)
        for name in ("beat", "worker"):
            env.children.pop(name).stop(timeout=10)
        result["outcomes"] = outcomes(engine)
        result["document_bytes_after_sending"] = document_bytes(engine)
        result["database_after_sending"] = database_size(engine)

        started = time.monotonic()
        counts = run_retention(
            runtime.session, now=utcnow, retention=timedelta(0), digests=runtime.email_digests,
            events_for=runtime.events_for, max_batches=1_000_000, max_seconds=float("inf"),
        )
        result["retention_seconds"] = round(time.monotonic() - started, 1)
        result["retention"] = counts.as_dict()
        result["document_bytes_after_retention"] = document_bytes(engine)
        result["uploads_with_candidate_data_after_retention"] = uploads_with_candidate_data(engine)
        result["database_after_retention"] = database_size(engine)
        if engine.dialect.name == "sqlite":
            result["database_after_vacuum_bytes"] = vacuumed_size(engine)
        engine.dispose()
    return result


def _mib(value: int) -> str:
    return f"{value / (1 << 20):.1f} MiB"


def report(result: dict[str, Any]) -> str:
    lines = [
        f"uploads with a CV of {result['cv_bytes']} bytes: {result['uploads']} ({result['companies']} companies; {result['backends']})",
        f"outcomes: {', '.join(f'{k} {v}' for k, v in sorted(result['outcomes'].items()))} in {result['send_seconds']} s",
        f"document bytes in the database, queued: {result['document_bytes_queued']}",
        f"document bytes in the database, after sending: {result['document_bytes_after_sending']}",
        f"document bytes in the database, after retention: {result['document_bytes_after_retention']}",
        f"uploads still holding candidate data after retention: {result['uploads_with_candidate_data_after_retention']}",
        f"retention: {', '.join(f'{k} {v}' for k, v in result['retention'].items())} in {result['retention_seconds']} s",
    ]
    for label, key in (("queued", "database_queued"), ("after sending", "database_after_sending"), ("after retention", "database_after_retention")):
        size = result[key]
        lines.append(f"database size, {label}: {_mib(size['bytes'])} ({_mib(size['free_bytes'])} free for reuse)")
    if "database_after_vacuum_bytes" in result:
        lines.append(f"database size, after VACUUM: {_mib(result['database_after_vacuum_bytes'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--uploads", type=int, default=2000, help="uploads with one CV each (default 2000)")
    parser.add_argument("--companies", type=int, default=40, help="companies they are spread over (each sends at most 5 uploads/s)")
    parser.add_argument("--cv-kib", type=int, default=100, help="size of each CV in KiB (default 100; 0: the small sample PDF)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up when sending takes longer (seconds)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or None, help="a Redis db for the benchmark alone: it is FLUSHED (default: embedded)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None, help="PostgreSQL URL (a fresh schema) (default: SQLite)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="the workers' log level (INFO: the worker says when it is ready)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs, database)")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.uploads < 1 or args.companies < 1:
        parser.error("--uploads and --companies must be at least 1")
    try:
        result = run(args.uploads, args.companies, Backends(args.redis_url, args.database_url), cv_kib=args.cv_kib, timeout=args.timeout, keep=args.keep, log_level=args.log_level)
    except BenchError as error:
        print(f"retention benchmark failed: {error}", file=sys.stderr)
        return 1
    print(report(result))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
