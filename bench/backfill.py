"""Benchmark: accepting a large backfill through the chunked contract (``python -m bench.backfill``).

The bench process plays the main app: it streams N generated candidates through
``tasks.producer.backfill_chunks`` and ``send_backfill_chunk`` (start, chunks, seal) to a real
``personio-sync worker`` on the embedded Redis and SQLite (or ``--redis-url``/``--database-url``).
The backfill is paused right after its start, so the figure is intake alone: the time until
every candidate is recorded in the database, and the peak RSS of every process and of Redis
while it happens. Two variants: candidates without documents, and each with a small inline CV.
Figures are printed, never asserted (tests/bench/test_backfill_bench.py runs a smoke size).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from bench import seed
from bench.stack import Backends, BenchError, Budget, Environment, Sampler, process_tree

BACKFILL_ID = "bench-backfill"
WORKER_CONCURRENCY = 32  # personio-sync's default worker threads
FULL_SIZE = 100_000
SMOKE_SIZE = 500
MAX_WAITING = 8  # chunks waiting in Redis before the producer sends the next (`backfill start --max-waiting`)
CV_BYTES = 2048  # "a small inline CV": a 2 KiB PDF-ish payload per candidate


def candidates(size: int, cv_bytes: int) -> Iterator[dict[str, Any]]:
    """Generated candidates, one at a time (the producer never holds the backfill)."""
    cv = base64.b64encode(b"%PDF-1.4\n" + b"x" * max(cv_bytes - 9, 0)).decode("ascii") if cv_bytes else None
    for seq in range(size):
        candidate: dict[str, Any] = seed.candidate(1, seq, "backfill")
        if cv is not None:
            candidate["documents"] = [{"category": "cv", "filename": f"cv-{seq}.pdf", "content_base64": cv}]
        yield candidate


def _recorded(engine: Any) -> int:
    from models import BackfillChunk

    with engine.connect() as connection:
        return int(connection.execute(select(func.coalesce(func.sum(BackfillChunk.recorded), 0)).where(BackfillChunk.backfill_id == BACKFILL_ID)).scalar_one())


def run(size: int, cv_bytes: int, backends: Backends, *, timeout: float = 1800.0, keep: bool = False) -> dict[str, Any]:
    """One intake run; returns the figures."""
    from cli.processes import worker_command
    from services.backfill import pause_backfill
    from tasks.producer import (
        backfill_chunks,
        send_backfill_chunk,
        send_backfill_seal,
        send_backfill_start,
        wait_for_room,
    )
    from worker.runtime import Runtime

    companies = seed.company_configs(1)
    with Environment(name="backfill", companies=companies, budget=Budget(), backends=backends, keep=keep) as env:
        runtime = Runtime(env.settings)
        runtime.prepare()  # embedded Redis + migrations, as `personio-sync worker` does
        settings = runtime.settings
        seed.seed_connections(runtime.engine, runtime.cipher, companies)
        runtime.engine.dispose()
        worker = env.start("worker", worker_command(settings, concurrency=WORKER_CONCURRENCY))
        worker.wait_for_log(b" ready.", timeout=90)
        reader = create_engine(settings.database_url)
        sampler = Sampler(interval=0.25)
        sampler.track("worker", lambda: process_tree(worker.pid) if worker.alive() else [])
        redis_pid = env.redis_pid()
        if redis_pid:
            sampler.track("redis", lambda: [redis_pid])
        me = os.getpid()
        sampler.track("producer (bench process)", lambda: [me])
        client = env.redis_client()
        redis_memory: dict[str, int] = {}

        def probe() -> None:
            used = int(client.info("memory")["used_memory"])  # type: ignore[index]
            redis_memory["peak"] = max(redis_memory.get("peak", 0), used)

        sampler.also(probe)
        try:
            send_backfill_start(BACKFILL_ID, account_id=seed.account_id(1), project_id=seed.project_id(1), expected_total=size, broker_url=settings.broker_url)
            _wait_for_record(env, reader, timeout=60)
            with runtime.session() as session:  # measure intake, not sending: nothing of it starts
                pause_backfill(session, BACKFILL_ID, now=_now())
            runtime.engine.dispose()
            sampler.start()
            started = time.monotonic()
            chunks = 0
            for chunk in backfill_chunks(candidates(size, cv_bytes)):
                wait_for_room(broker_url=settings.broker_url, max_waiting=MAX_WAITING)  # as `backfill start` paces
                send_backfill_chunk(BACKFILL_ID, chunks, chunk, broker_url=settings.broker_url)
                chunks += 1
            send_backfill_seal(BACKFILL_ID, chunk_count=chunks, broker_url=settings.broker_url)
            sent = time.monotonic() - started
            deadline = started + timeout
            recorded = 0
            while recorded < size:
                env.check()
                if time.monotonic() > deadline:
                    raise BenchError(f"only {recorded} of {size} candidates recorded after {timeout:g} s")
                time.sleep(0.25)
                recorded = _recorded(reader)
            intake = time.monotonic() - started
            sampler.stop()
        finally:
            client.close()
            reader.dispose()
        return {
            "candidates": size,
            "cv_bytes": cv_bytes,
            "chunks": chunks,
            "send_seconds": round(sent, 2),
            "intake_seconds": round(intake, 2),
            "candidates_per_second": round(size / intake, 1),
            "peak_rss_mib": {name: round(value / 2**20, 1) for name, value in sampler.peak_rss.items()},
            "redis_peak_used_memory_mib": round(redis_memory.get("peak", 0) / 2**20, 1),
            "backends": backends.describe(),
        }


def drain(size: int, backends: Backends, *, timeout: float = 1800.0, keep: bool = False) -> dict[str, Any]:
    """Send a backfill of ``size`` candidates (with a CV each) to the stand-in, time-scaled, and
    compare the ETA ``backfill status`` gives at 10 %, 50 % and 90 % with the real finish; at
    50 % a recruiter's interactive upload for the same company is sent and timed."""
    from cli.processes import beat_command, worker_command
    from services.backfill import backfill_status
    from services.uploads import upload_status
    from tasks.backfills import company_budget
    from tasks.producer import (
        backfill_chunks,
        send_backfill_chunk,
        send_backfill_seal,
        send_backfill_start,
        send_upload_request,
    )
    from worker.runtime import Runtime

    budget = Budget()
    companies = seed.company_configs(1)
    with Environment(name="drain", companies=companies, budget=budget, backends=backends, keep=keep) as env:
        runtime = Runtime(env.settings)
        runtime.prepare()
        settings = runtime.settings
        seed.seed_connections(runtime.engine, runtime.cipher, companies)
        runtime.engine.dispose()
        worker = env.start("worker", worker_command(settings, concurrency=WORKER_CONCURRENCY))
        worker.wait_for_log(b" ready.", timeout=90)
        env.start("beat", beat_command(settings))
        rate = company_budget(settings)
        cv = base64.b64encode(b"%PDF-1.4\n" + b"x" * (CV_BYTES - 9)).decode("ascii")
        entries = ({**seed.candidate(1, seq, "drain"), "documents": [{"category": "cv", "filename": "cv.pdf", "content_base64": cv}]} for seq in range(size))
        started = time.monotonic()
        send_backfill_start(BACKFILL_ID, account_id=seed.account_id(1), project_id=seed.project_id(1), expected_total=size, broker_url=settings.broker_url)
        chunks = 0
        for chunk in backfill_chunks(entries):
            send_backfill_chunk(BACKFILL_ID, chunks, chunk, broker_url=settings.broker_url)
            chunks += 1
        send_backfill_seal(BACKFILL_ID, chunk_count=chunks, broker_url=settings.broker_url)
        marks: dict[int, dict[str, float]] = {}
        click: dict[str, Any] = {}
        finished: float | None = None
        deadline = started + timeout
        while True:
            env.check()
            if time.monotonic() > deadline:
                raise BenchError(f"backfill not finished after {timeout:g} s")
            with runtime.session() as session:
                status = backfill_status(session, BACKFILL_ID, budget=rate, now=_now())
                if click.get("request_id") and "seconds" not in click:
                    outcome = upload_status(session, click["request_id"])
                    if outcome and outcome["terminal"]:
                        click["seconds"] = round(time.monotonic() - click["sent"], 3)
                        click["outcome"] = outcome["state"]
                        # recorded → outcome by the database's own timestamps (no polling in it)
                        recorded_at = datetime.fromisoformat(outcome["created_at"])
                        click["recorded_to_outcome"] = round((datetime.fromisoformat(outcome["finished_at"]) - recorded_at).total_seconds(), 3)
            now = time.monotonic()
            done = status["done"] if status else 0
            for percent in (10, 50, 90):
                if percent not in marks and status and status["total"] == size and done >= size * percent / 100 and status["eta_seconds"] is not None:
                    marks[percent] = {"at": now - started, "eta_seconds": status["eta_seconds"]}
                    if percent == 50:
                        request = seed.upload_request(1, 0, tag="click")
                        send_upload_request(request, broker_url=settings.broker_url)
                        click.update(request_id=request["request_id"], sent=time.monotonic())
            if status and status["total"] == size and done == size and finished is None:
                finished = now - started  # the last outcome (the record turns "finished" at the next progress pass)
            if finished is not None and ("seconds" in click or not click):
                break
            time.sleep(0.2)
        runtime.engine.dispose()
        eta = {
            f"{percent}%": {
                "at_seconds": round(mark["at"], 1),
                "eta_seconds": round(mark["eta_seconds"], 1),
                "actual_remaining_seconds": round(finished - mark["at"], 1),
                "error_percent": round(100 * (mark["eta_seconds"] - (finished - mark["at"])) / max(finished - mark["at"], 1e-9), 1),
            }
            for percent, mark in sorted(marks.items())
        }
        return {
            "candidates": size,
            "rate": budget.rate_text,
            "requests_per_candidate": 2,
            "finished_seconds": round(finished, 1),
            "lower_bound_seconds": round(2 * size / rate.per_second, 1),
            "eta": eta,
            "interactive_upload_seconds": click.get("seconds"),
            "interactive_outcome": click.get("outcome"),
            "interactive_recorded_to_outcome_seconds": click.get("recorded_to_outcome"),
            "budget_slot_seconds": round(budget.period / budget.limit, 3),
            "backends": backends.describe(),
        }


def drain_report(result: dict[str, Any]) -> str:
    lines = [f"drain: {result['candidates']:,} candidates with a CV at {result['rate']}: finished after {result['finished_seconds']} s "
             f"(budget bound {result['lower_bound_seconds']} s)",
             "| at | ETA given | actually remaining | error |", "| --- | --- | --- | --- |"]
    for percent, mark in result["eta"].items():
        lines.append(f"| {percent} ({mark['at_seconds']} s) | {mark['eta_seconds']} s | {mark['actual_remaining_seconds']} s | {mark['error_percent']:+} % |")
    lines.append(f"interactive upload sent at 50 %: {result['interactive_outcome']} after {result['interactive_upload_seconds']} s "
                 f"(recorded → outcome {result['interactive_recorded_to_outcome_seconds']} s; one budget slot: {result['budget_slot_seconds']} s)")
    return "\n".join(lines)


def _now() -> Any:
    from models import utcnow

    return utcnow()


def _wait_for_record(env: Environment, engine: Any, *, timeout: float) -> None:
    from models import Backfill

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        env.check()
        with engine.connect() as connection:
            if connection.execute(select(Backfill.id).where(Backfill.id == BACKFILL_ID)).first() is not None:
                return
        time.sleep(0.1)
    raise BenchError(f"backfill {BACKFILL_ID} was not started within {timeout:g} s")


def report(results: list[dict[str, Any]]) -> str:
    lines = ["| candidates | CV per candidate | chunks | intake (all recorded) | candidates/s | peak RSS worker | peak RSS producer | peak RSS redis | Redis used memory peak |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        rss = r["peak_rss_mib"]
        lines.append(
            f"| {r['candidates']:,} | {r['cv_bytes'] or 'none'}{' B' if r['cv_bytes'] else ''} | {r['chunks']} | {r['intake_seconds']} s "
            f"| {r['candidates_per_second']} | {rss.get('worker', 0)} MiB | {rss.get('producer (bench process)', 0)} MiB "
            f"| {rss.get('redis', 0)} MiB | {r['redis_peak_used_memory_mib']} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=int, default=FULL_SIZE, help=f"candidates (default {FULL_SIZE:,}; the smoke test uses {SMOKE_SIZE})")
    parser.add_argument("--variant", choices=("both", "plain", "cv", "none"), default="both",
                        help="intake without documents, with a small inline CV, both, or none (only --drain)")
    parser.add_argument("--drain", type=int, default=0, metavar="N",
                        help="also drain a backfill of N candidates against the stand-in (time-scaled) and check its ETA (the issue's figure: 2000)")
    parser.add_argument("--cv-bytes", type=int, default=CV_BYTES)
    parser.add_argument("--redis-url", default=None, help="a Redis to use instead of the embedded one (its db is flushed)")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL to use (a fresh schema, dropped afterwards)")
    parser.add_argument("--output", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs, database)")
    args = parser.parse_args(argv)
    backends = Backends(redis_url=args.redis_url, database_url=args.database_url)
    variants = {"both": [0, args.cv_bytes], "plain": [0], "cv": [args.cv_bytes], "none": []}[args.variant]
    results: list[dict[str, Any]] = []
    for cv_bytes in variants:
        print(f"backfill intake: {args.size:,} candidates, {'CV ' + str(cv_bytes) + ' B' if cv_bytes else 'no documents'} …", flush=True)
        results.append(run(args.size, cv_bytes, backends, keep=args.keep))
        print(json.dumps(results[-1]), flush=True)
    print()
    if results:
        print(report(results))
    drained = None
    if args.drain:
        print(f"backfill drain: {args.drain:,} candidates against the stand-in …", flush=True)
        drained = drain(args.drain, backends, keep=args.keep)
        print(json.dumps(drained), flush=True)
        print()
        print(drain_report(drained))
    if args.output:
        args.output.write_text(json.dumps({"intake": results, "drain": drained}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
