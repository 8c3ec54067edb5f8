"""The three scenarios, each run once per design against a fresh stand-in and broker.

* ``saturated``: one company with a deep backlog; requests accepted ÷ allowed, 429s.
* ``fairness``: one company with a 10,000-upload backlog, another idle one sends
  interactive uploads one every 0.5 s; enqueue → ``submitted`` latency of those.
* ``many``: 200 companies backlogged, 100,000 uploads queued in total; aggregate
  uploads/s and what bounds it, peak worker RSS, Redis memory.

Both designs get the same stand-in (budget, lock-out, latency), one worker process (tree)
each and the same uploads (one inline CV + the application). personio-sync runs as
production does (threads pool, 32 threads); the naive worker runs with Celery's defaults
(prefork, one process per CPU) — see Naive.start for why not threads.
"""

from __future__ import annotations

import os
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

from bench import seed
from bench.stack import Backends, BenchError, Budget, Child, Environment, Sampler, process_tree
from sandbox import CompanyConfig

PRODUCT = "personio-sync"
NAIVE = "naive"
DESIGNS = (PRODUCT, NAIVE)
WORKER_CONCURRENCY = 32  # personio-sync's default (PERSONIO_SYNC_WORKER_CONCURRENCY, threads)
NAIVE_CONCURRENCY = os.cpu_count() or 2  # Celery's default for the naive worker (prefork)


@dataclass(frozen=True)
class Scale:
    """How big and how long each scenario runs (full or --quick)."""

    warmup: float
    saturated_backlog: int
    saturated_window: float
    fairness_backlog: int
    fairness_uploads: int
    fairness_gap: float
    fairness_wait: float  # after the last interactive upload, at most
    many_companies: int
    many_queued: int
    many_window: float


FULL = Scale(
    warmup=6.0,
    saturated_backlog=2_000,
    saturated_window=60.0,
    fairness_backlog=10_000,
    fairness_uploads=20,
    fairness_gap=0.5,
    fairness_wait=30.0,
    many_companies=200,
    many_queued=100_000,
    many_window=60.0,
)
QUICK = Scale(
    warmup=3.0,
    saturated_backlog=300,
    saturated_window=8.0,
    fairness_backlog=1_000,
    fairness_uploads=10,
    fairness_gap=0.5,
    fairness_wait=6.0,
    many_companies=40,
    many_queued=4_000,
    many_window=8.0,
)


@dataclass
class Context:
    scale: Scale
    budget: Budget
    backends: Backends
    log_level: str = "INFO"
    keep: bool = False
    pump_interval: float = 0.25
    workers: int = 1  # personio-sync worker processes (they share every budget through Redis)
    overrides: dict[str, str] = field(default_factory=dict)  # extra PERSONIO_* settings
    say: Callable[[str], None] = print


# =========================================================================== designs


class _Closable(Protocol):
    def close(self) -> None: ...


_ClosableT = TypeVar("_ClosableT", bound=_Closable)


class Design:
    """What a scenario needs from a design: seed a backlog, start, send, observe."""

    name: str

    def __init__(self, env: Environment, ctx: Context) -> None:
        self.env = env
        self.ctx = ctx
        self.worker: Child | None = None
        self._to_close: list[_Closable] = []

    def prepare(self, companies: list[CompanyConfig]) -> None: ...
    def backlog(self, companies: list[CompanyConfig], per_company: int) -> int:
        raise NotImplementedError
    def start(self) -> None: ...
    def send(self, company: CompanyConfig, seq: int, tag: str) -> str:
        raise NotImplementedError
    def outcomes(self, request_ids: list[str]) -> dict[str, tuple[float, str]]:
        raise NotImplementedError
    def queued(self) -> int:
        raise NotImplementedError

    def track(self, sampler: Sampler) -> None:
        sampler.track("worker", lambda: process_tree(self.worker.pid) if self.worker and self.worker.alive() else [])
        redis_pid = self.env.redis_pid()
        if redis_pid:
            sampler.track("redis", lambda: [redis_pid])
        me = os.getpid()
        sampler.track("stand-in (bench process)", lambda: [me])
        client = self._closes(self.env.redis_client())
        memory: dict[str, int] = {}

        def probe() -> None:
            used = int(cast("dict[str, Any]", client.info("memory"))["used_memory"])
            memory["peak"] = max(memory.get("peak", 0), used)
            memory["last"] = used

        sampler.also(probe)
        self.redis_memory = memory

    def _closes(self, resource: _ClosableT) -> _ClosableT:
        """Remember ``resource`` so ``close`` closes it (whichever steps ran before a failure)."""
        self._to_close.append(resource)
        return resource

    def close(self) -> None:
        while self._to_close:
            self._to_close.pop().close()


class Product(Design):
    """personio-sync as production runs it: `personio-sync worker` + `personio-sync beat`."""

    name = PRODUCT

    def prepare(self, companies: list[CompanyConfig]) -> None:
        from worker.runtime import Runtime

        runtime = Runtime(self.env.settings)
        runtime.prepare()  # embedded Redis (if configured) + migrations, as `personio-sync worker` does
        self.settings = runtime.settings
        self._engine = runtime.engine
        seed.seed_connections(runtime.engine, runtime.cipher, companies)

    def backlog(self, companies: list[CompanyConfig], per_company: int) -> int:
        return seed.seed_backlog(self._engine, [(seed.index_of(c), per_company) for c in companies])

    def start(self) -> None:
        from cli.processes import beat_command, worker_command

        self._engine.dispose()  # the benchmark holds no database connection while measuring
        command = worker_command(self.settings, concurrency=WORKER_CONCURRENCY)
        self.worker = self.env.start("worker", command)
        # More processes: the same command under its own node name (Celery warns about twins).
        self.more_workers = [
            self.env.start(f"worker-{n}", [f"personio-sync-{n}@%h" if arg == "personio-sync@%h" else arg for arg in command])
            for n in range(2, self.ctx.workers + 1)
        ]
        for worker in [self.worker, *self.more_workers]:
            worker.wait_for_log(b" ready.", timeout=90)
        self.env.start("beat", beat_command(self.settings))
        self._reader = self._closes(_DbReader(self.settings.database_url))

    def track(self, sampler: Sampler) -> None:
        super().track(sampler)
        for extra in getattr(self, "more_workers", []):
            # Tracked as "worker-N": CPU per upload adds up every "worker*".
            sampler.track(extra.name, _tree_of(extra))
        beat = self.env.children.get("beat")
        if beat is not None:
            sampler.track("beat", lambda: process_tree(beat.pid) if beat.alive() else [])

    def send(self, company: CompanyConfig, seq: int, tag: str) -> str:
        from tasks.producer import send_upload_request

        request = seed.upload_request(seed.index_of(company), seq, tag=tag)
        send_upload_request(request, broker_url=self.settings.broker_url)
        return str(request["request_id"])

    def outcomes(self, request_ids: list[str]) -> dict[str, tuple[float, str]]:
        return self._reader.finished(request_ids)

    def queued(self) -> int:
        return self._reader.count_queued()


class Naive(Design):
    """bench/naive.py: Celery rate_limit + autoretry on 429, backlog in the broker."""

    name = NAIVE

    def prepare(self, companies: list[CompanyConfig]) -> None:
        from celery import Celery

        from bench import naive

        self.env.ensure_redis()
        settings = self.env.settings
        self.broker_url = settings.broker_url
        self.redis = self._closes(self.env.redis_client())
        self.redis.delete(naive.DONE_KEY)
        self.redis.hset(naive.TOKENS_KEY, mapping={str(c.company_id): c.access_token for c in companies})
        self.producer = Celery("bench_naive_producer", broker=self.broker_url, set_as_current=False)
        self.producer.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True)
        budget = self.ctx.budget
        uploads_per_s = budget.uploads_per_company_per_s  # Personio: 10/m; 20/2s: 5/s
        self.rate_limit = f"{uploads_per_s:g}/s"
        self.extra_env = {
            "BENCH_NAIVE_BROKER_URL": self.broker_url,
            "BENCH_NAIVE_REDIS_URL": settings.redis_client_url,
            "BENCH_NAIVE_API_URL": self.env.sandbox.url,
            "BENCH_NAIVE_RATE_LIMIT": self.rate_limit,
            "BENCH_NAIVE_RETRY_BACKOFF": str(max(int(round(budget.lockout)), 1)),
            "BENCH_NAIVE_RETRY_BACKOFF_MAX": str(max(int(round(budget.lockout * 10)), 1)),
            "BENCH_NAIVE_MAX_RETRIES": "8",
        }

    def _send_many(self, requests: Any) -> int:
        from bench import naive

        count = 0
        with self.producer.producer_or_acquire() as producer:
            for request in requests:
                self.producer.send_task(naive.TASK, args=[request], queue=naive.QUEUE, producer=producer)
                count += 1
        return count

    def backlog(self, companies: list[CompanyConfig], per_company: int) -> int:
        return self._send_many(seed.naive_backlog(companies, per_company))

    def start(self) -> None:
        from bench import naive

        # Celery's defaults: prefork, one process per CPU. Celery's rate_limit does not hold
        # sub-second spacing against Redis for long in either pool: at 5/s it runs at the
        # configured pace for ~45 tasks, then settles at one task per ~1.15 s (the next
        # message is fetched on the event loop's 1 s tick); the threads pool does so from the
        # start once its prefetch window is larger than a few messages. At Personio's real
        # pacing (10/m, one upload per 6 s) that tick would not limit it, so the naive
        # throughput here is pessimistic (see bench/README.md); prefork is the better case.
        command = [
            sys.executable, "-m", "celery", "-A", "bench.naive", "worker",
            "--pool", "prefork", "--concurrency", str(NAIVE_CONCURRENCY),
            "--queues", naive.QUEUE, "--loglevel", self.ctx.log_level,
            "--without-gossip", "--without-mingle", "--hostname", "bench-naive@%h",
        ]
        self.worker = self.env.start("naive-worker", command, self.extra_env)
        self.worker.wait_for_log(b" ready.", timeout=90)

    def send(self, company: CompanyConfig, seq: int, tag: str) -> str:
        request = seed.naive_request(company, seq, tag=tag)
        self._send_many([request])
        return str(request["request_id"])

    def outcomes(self, request_ids: list[str]) -> dict[str, tuple[float, str]]:
        from bench import naive

        found: dict[str, tuple[float, str]] = {}
        for request_id, value in zip(request_ids, cast("list[Any]", self.redis.hmget(naive.DONE_KEY, request_ids)), strict=True):
            if value:
                at, outcome = value.split("|", 1)
                found[request_id] = (float(at), outcome)
        return found

    def queued(self) -> int:
        from bench import naive

        return int(cast(int, self.redis.llen(naive.QUEUE)))


TERMINAL = ("submitted", "already_in_personio", "rejected", "failed")


class _DbReader:
    """Reads upload outcomes without taking SQLite's write lock (the product's engine begins
    every transaction with BEGIN IMMEDIATE; a plain autocommit reader in WAL mode does not)."""

    def __init__(self, database_url: str) -> None:
        self._sqlite: sqlite3.Connection | None = None
        self._engine = None
        if database_url.startswith("sqlite"):
            path = database_url.split("///", 1)[1]
            self._sqlite = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        else:
            from sqlalchemy import create_engine

            self._engine = create_engine(database_url, pool_size=1, max_overflow=0)

    def _query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if self._sqlite is not None:
            return list(self._sqlite.execute(sql.replace("%s", "?"), params).fetchall())
        assert self._engine is not None
        with self._engine.connect() as conn:
            return list(conn.exec_driver_sql(sql, tuple(params)).tuples().fetchall())

    def finished(self, request_ids: list[str]) -> dict[str, tuple[float, str]]:
        if not request_ids:
            return {}
        marks = ",".join(["%s"] * len(request_ids))
        rows = self._query(f"SELECT request_id, state, finished_at FROM uploads WHERE request_id IN ({marks})", request_ids)
        found: dict[str, tuple[float, str]] = {}
        for request_id, state, finished_at in rows:
            if state in TERMINAL and finished_at is not None:
                found[request_id] = (_epoch(finished_at), state)
        return found

    def count_queued(self) -> int:
        return int(self._query("SELECT count(*) FROM uploads WHERE state = %s", ["queued"])[0][0])

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._engine is not None:
            self._engine.dispose()


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


_PUMP_DONE = re.compile(rb"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): INFO/MainProcess\] Task personio_sync\.pump\[[^]]*\] succeeded in ([0-9.e-]+)s")


def _pump_ticks(env: Environment, t0: float, t1: float) -> dict[str, Any]:
    """Pump runs that ended in [t0, t1], from the workers' logs (Celery logs each task's duration)."""
    durations = []
    for log in sorted((env.data_dir / "logs").glob("worker*.log")):
        for line in log.read_bytes().splitlines():
            match = _PUMP_DONE.match(line)
            if match is None:
                continue
            # Celery logs local time with milliseconds.
            ended = time.mktime(time.strptime(match[1].decode(), "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000
            if t0 <= ended <= t1:
                durations.append(float(match[3]))
    if not durations:
        return {"pump_ticks": 0}
    return {
        "pump_ticks": len(durations),
        "pump_tick_p50_ms": round(percentile(durations, 50) * 1000, 1),
        "pump_tick_p95_ms": round(percentile(durations, 95) * 1000, 1),
    }


def _tree_of(child: Child) -> Callable[[], list[int]]:
    return lambda: process_tree(child.pid) if child.alive() else []


def _design(name: str, env: Environment, ctx: Context) -> Design:
    return Product(env, ctx) if name == PRODUCT else Naive(env, ctx)


# =========================================================================== measuring helpers


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _company(stats: dict[str, Any], company: CompanyConfig) -> dict[str, Any]:
    companies: dict[str, dict[str, Any]] = stats["companies"]
    return companies.get(str(company.company_id), {"accepted": 0, "rate_limited": 0, "timestamps": []})


def _wait_first_request(env: Environment, companies: list[CompanyConfig], timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while time.monotonic() < deadline:
        env.check()
        stats = env.sandbox.state.stats()
        if any(_company(stats, c)["accepted"] for c in companies):
            return time.monotonic() - started
        time.sleep(0.1)
    raise BenchError(f"no request reached the stand-in within {timeout:.0f}s")


def _accepted_between(stats: dict[str, Any], company: CompanyConfig, t0: float, t1: float) -> int:
    return sum(1 for ts in _company(stats, company).get("timestamps", []) if t0 <= ts < t1)


def _utilisation(stats: dict[str, Any], company: CompanyConfig, t0: float, t1: float, budget: Budget) -> tuple[float, int, float]:
    accepted = _accepted_between(stats, company, t0, t1)
    allowed = budget.limit * (t1 - t0) / budget.period
    return accepted / allowed, accepted, allowed


def _utilisation_by_cycle(stats: dict[str, Any], company: CompanyConfig, t0: float, t1: float, budget: Budget) -> float | None:
    """period ÷ the median time from each accepted request to the one ``limit`` later.

    A saturated sliding window repeats its first burst every cycle, so a count over a window
    that is not many cycles long depends on where the bursts fall (±limit requests); the time
    between request i and request i + limit is the cycle itself, whatever the phase.
    """
    times = sorted(ts for ts in _company(stats, company).get("timestamps", []) if t0 <= ts < t1)
    cycles = [later - earlier for earlier, later in zip(times, times[budget.limit:], strict=False)]
    return budget.period / statistics.median(cycles) if cycles else None


def _rate_limited(stats: dict[str, Any], companies: list[CompanyConfig]) -> int:
    return sum(_company(stats, c)["rate_limited"] for c in companies)


def _run(design_name: str, scenario: str, companies: list[CompanyConfig], ctx: Context, body: Callable[[Design, Environment, Sampler], dict[str, Any]]) -> dict[str, Any]:
    env = Environment(
        f"{scenario}-{design_name}", companies, ctx.budget, ctx.backends,
        log_level=ctx.log_level, keep=ctx.keep, pump_interval=ctx.pump_interval, overrides=dict(ctx.overrides),
    )
    sampler = Sampler()
    design: Design | None = None
    started = time.monotonic()
    try:
        env.open()
        design = _design(design_name, env, ctx)
        result = body(design, env, sampler)
        result["scenario_seconds"] = round(time.monotonic() - started, 1)
        return result
    finally:
        sampler.stop()
        if design is not None:
            design.close()
        env.close()


# =========================================================================== scenarios


def saturated(design_name: str, ctx: Context) -> dict[str, Any]:
    """One company with a deep backlog: how close to the budget, and how many 429s."""
    scale, budget = ctx.scale, ctx.budget
    companies = seed.company_configs(1)
    company = companies[0]

    def body(design: Design, env: Environment, sampler: Sampler) -> dict[str, Any]:
        design.prepare(companies)
        t = time.monotonic()
        queued = design.backlog(companies, scale.saturated_backlog)
        ctx.say(f"    {queued:,} uploads queued in {time.monotonic() - t:.1f}s; starting the worker")
        design.start()
        design.track(sampler)
        sampler.start()
        _wait_first_request(env, companies)
        env.sleep(scale.warmup)
        t0 = time.time()
        sampler.mark("t0")
        env.sleep(scale.saturated_window)
        t1 = time.time()
        sampler.mark("t1")
        stats = env.sandbox.state.stats(include_timestamps=True)
        ratio, accepted, allowed = _utilisation(stats, company, t0, t1, budget)
        apps = _company(stats, company)["endpoints"]["applications"]["timestamps"]
        uploads = sum(1 for ts in apps if t0 <= ts < t1)
        mine = _company(stats, company)["endpoints"]
        cycle = _utilisation_by_cycle(stats, company, t0, t1, budget)
        return {
            "utilisation": round(ratio, 4),
            "utilisation_by_cycle": round(cycle, 4) if cycle is not None else None,
            "accepted_in_window": accepted,
            "allowed_in_window": round(allowed, 1),
            "window_s": round(t1 - t0, 2),
            "rate_limited": _rate_limited(stats, companies),
            "requests_sent": _company(stats, company)["accepted"] + _company(stats, company)["rate_limited"],
            "uploads_per_s": round(uploads / (t1 - t0), 3),
            "uploads_per_s_allowed": budget.uploads_per_company_per_s,
            "requests_per_submitted_upload": round(accepted / uploads, 3) if uploads else None,
            # CVs at Personio with no application yet: work in progress, or re-uploads (waste).
            "cvs_without_application": mine["documents"]["accepted"] - mine["applications"]["accepted"],
            "cpu_percent": sampler.cpu_percent("t0", "t1"),
        }

    return _run(design_name, "saturated", companies, ctx, body)


def fairness(design_name: str, ctx: Context) -> dict[str, Any]:
    """An idle company's interactive uploads while another company works off a big backlog."""
    scale, budget = ctx.scale, ctx.budget
    companies = seed.company_configs(2)
    busy, idle = companies

    def body(design: Design, env: Environment, sampler: Sampler) -> dict[str, Any]:
        design.prepare(companies)
        t = time.monotonic()
        queued = design.backlog([busy], scale.fairness_backlog)
        ctx.say(f"    {queued:,} uploads queued for the busy company in {time.monotonic() - t:.1f}s; starting the worker")
        design.start()
        design.track(sampler)
        sampler.start()
        _wait_first_request(env, [busy])
        env.sleep(scale.warmup)
        backlog_left = design.queued()
        sent: dict[str, float] = {}
        first_send = time.time()
        for seq in range(scale.fairness_uploads):
            due = first_send + seq * scale.fairness_gap
            while (left := due - time.time()) > 0:
                time.sleep(min(left, 0.05))
            env.check()
            enqueued = time.time()
            request_id = design.send(idle, seq, "interactive")
            sent[request_id] = enqueued
        last_send = time.time()
        deadline = last_send + scale.fairness_wait
        done: dict[str, tuple[float, str]] = {}
        while time.time() < deadline:
            env.check()
            done = design.outcomes(list(sent))
            if len(done) == len(sent):
                break
            time.sleep(0.05)
        waited = time.time() - first_send
        stats = env.sandbox.state.stats(include_timestamps=True)
        latencies = sorted(done[r][0] - sent[r] for r in sent if r in done)
        outcomes: dict[str, int] = {}
        for _, outcome in done.values():
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        target = budget.slot + budget.requests_per_upload * budget.latency[1]
        result: dict[str, Any] = {
            "sent": len(sent),
            "finished": len(done),
            "outcomes": outcomes,
            "backlog_queued_at_start": backlog_left,
            "target_s": round(target, 3),
            "latencies_s": [round(x, 4) for x in latencies],
            "waited_s": round(waited, 1),
            "rate_limited": _rate_limited(stats, companies),
        }
        needed = int(len(sent) * 0.95 + 0.999)  # finished uploads needed for a p95
        if len(latencies) >= needed and latencies:
            # Missing ones (if any) are slower than every finished one: pad them as +inf.
            padded = latencies + [float("inf")] * (len(sent) - len(latencies))
            result["p95_s"] = round(percentile(padded, 95), 4)
            result["p50_s"] = round(percentile(padded, 50), 4)
            result["max_s"] = round(max(padded), 4) if len(latencies) == len(sent) else None
        else:
            result["p95_s"] = None
            result["p95_lower_bound_s"] = round(min(scale.fairness_wait + (last_send - first_send), waited), 1)
            # Where the interactive uploads sit: behind the backlog, at the measured pace.
            busy_apps = [ts for ts in _company(stats, busy)["endpoints"]["applications"]["timestamps"] if first_send <= ts]
            pace = len(busy_apps) / max(time.time() - first_send, 1e-9)
            if pace > 0:
                result["p95_estimate_s"] = round(backlog_left / pace, 0)
        ratio, _, _ = _utilisation(stats, busy, first_send, first_send + waited, budget)
        result["busy_company_utilisation"] = round(ratio, 4)
        return result

    return _run(design_name, "fairness", companies, ctx, body)


def many(design_name: str, ctx: Context) -> dict[str, Any]:
    """Many companies, all backlogged: aggregate uploads/s, its bound, worker memory."""
    scale, budget = ctx.scale, ctx.budget
    companies = seed.company_configs(scale.many_companies)
    per_company = scale.many_queued // scale.many_companies

    def body(design: Design, env: Environment, sampler: Sampler) -> dict[str, Any]:
        design.prepare(companies)
        client = env.redis_client()
        redis_before = int(cast("dict[str, Any]", client.info("memory"))["used_memory"])  # the naive backlog lives in Redis
        client.close()
        t = time.monotonic()
        queued = design.backlog(companies, per_company)
        seconds = time.monotonic() - t
        ctx.say(f"    {queued:,} uploads queued for {len(companies)} companies in {seconds:.1f}s; starting the worker")
        design.start()
        design.track(sampler)
        sampler.start()
        queued_at_start = design.queued()
        _wait_first_request(env, companies)
        env.sleep(scale.warmup)
        s0 = env.sandbox.state.stats()
        t0 = time.time()
        sampler.mark("t0")
        env.sleep(scale.many_window)
        sampler.mark("t1")
        t1 = time.time()
        s1 = env.sandbox.state.stats(include_timestamps=True)
        window = t1 - t0
        uploads = s1["applications"] - s0["applications"]
        accepted = sum(_company(s1, c)["accepted"] - _company(s0, c)["accepted"] for c in companies)
        per_company_ratio = [_utilisation(s1, c, t0, t1, budget)[0] for c in companies]
        cpu = sampler.cpu_percent("t0", "t1")
        rate = uploads / window
        result: dict[str, Any] = {
            "companies": len(companies),
            "queued": queued,
            "queued_at_worker_start": queued_at_start,
            "enqueue_seconds": round(seconds, 1),
            "window_s": round(window, 2),
            "uploads_per_s": round(rate, 2),
            "requests_per_s": round(accepted / window, 2),
            "rate_limited": _rate_limited(s1, companies),
            "budget_uploads_per_s": round(len(companies) * budget.uploads_per_company_per_s, 1),
            "company_utilisation_mean": round(statistics.fmean(per_company_ratio), 4),
            "company_utilisation_min": round(min(per_company_ratio), 4),
            "cpu_percent": cpu,
            "cpu_cores": os.cpu_count() or 1,
            "worker_processes": ctx.workers if design_name == PRODUCT else 1,
            # Worker CPU-seconds (every worker process) per application created, in ms.
            "worker_cpu_ms_per_upload": (
                round(sum(v for k, v in cpu.items() if k.startswith("worker")) / 100 * window / uploads * 1000, 2) if uploads else None
            ),
            "peak_worker_rss_mib": round(sampler.peak_rss.get("worker", 0) / 2**20, 1),
            **(_pump_ticks(env, t0, t1) if design_name == PRODUCT else {}),
            "redis_memory_mib": round(design.redis_memory.get("peak", 0) / 2**20, 1),
            "redis_memory_growth_mib": round((design.redis_memory.get("peak", 0) - redis_before) / 2**20, 1),
        }
        if "beat" in sampler.peak_rss:
            result["peak_beat_rss_mib"] = round(sampler.peak_rss["beat"] / 2**20, 1)
        result["bound"] = explain_bound(design_name, result, ctx, getattr(design, "rate_limit", None))
        return result

    return _run(design_name, "many", companies, ctx, body)


def explain_bound(design_name: str, r: dict[str, Any], ctx: Context, naive_rate: str | None) -> str:
    """One sentence on what limits the aggregate rate, from the measured numbers."""
    budget = ctx.budget
    rate = r["uploads_per_s"]
    cpu = r["cpu_percent"]
    cores = r["cpu_cores"]
    worker = cpu.get("worker", 0.0)
    # Several worker processes: each is bounded by its own core (GIL); the busiest one decides.
    busiest = max((v for k, v in cpu.items() if k.startswith("worker")), default=0.0)
    total = sum(cpu.values())
    mean_latency = sum(budget.latency) / 2
    threads = WORKER_CONCURRENCY / (budget.requests_per_upload * mean_latency)
    pool = f"{WORKER_CONCURRENCY} threads at {mean_latency * 1000:.0f} ms per request allow ≈{threads:.0f}/s; "
    if design_name == NAIVE:
        pool = ""
    parts = (
        f"budget allows {r['budget_uploads_per_s']:g}/s, {pool}CPU: worker {worker:.0f}%, "
        + ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items() if k != "worker")
        + f" (machine {total:.0f}% of {cores * 100}%)"
    )
    if design_name == NAIVE and naive_rate:
        per_worker = float(naive_rate.split("/")[0])
        if rate >= 0.8 * per_worker:
            return f"Celery's rate_limit ({naive_rate} per worker and task, not per company) — {parts}"
        return (
            f"Celery's rate_limit: {naive_rate} per worker and task (not per company), of which it "
            f"delivered {rate:.2f}/s (its 1 s event-loop tick paces sub-second limits) — {parts}"
        )
    if rate >= 0.9 * r["budget_uploads_per_s"]:
        return f"the Personio budget — {parts}"
    if worker >= 85.0 and r.get("worker_processes", 1) == 1:
        return f"the worker's CPU (one process; its threads share one core under the GIL) — {parts}"
    if busiest >= 85.0:
        return f"the worker processes' CPU (each one's threads share one core under the GIL) — {parts}"
    if total >= 0.85 * cores * 100:
        return f"the machine's CPU (worker, stand-in and Redis share {cores} cores) — {parts}"
    if rate >= 0.8 * threads:
        return f"worker threads waiting on request latency — {parts}"
    return f"neither budget, threads nor CPU is saturated (waits: pump interval, database locks) — {parts}"


SCENARIOS: dict[str, Callable[[str, Context], dict[str, Any]]] = {
    "saturated": saturated,
    "fairness": fairness,
    "many": many,
}


def run_scenario(name: str, design_name: str, ctx: Context) -> dict[str, Any]:
    try:
        return SCENARIOS[name](design_name, ctx)
    except BenchError as error:
        print(f"    {name}/{design_name} failed: {error}", file=sys.stderr)
        return {"error": str(error).splitlines()[0]}
