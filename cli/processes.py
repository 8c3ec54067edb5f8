"""Running the worker, beat and Flower as child processes (``up``, ``demo``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings
from config.names import ALL_QUEUES
from worker.flower import flower_basic_auth

__all__ = ["beat_command", "flower_basic_auth", "flower_command", "worker_command"]


def worker_command(settings: Settings, *, concurrency: int | None = None, loglevel: str | None = None) -> list[str]:
    # Threads: the work is waiting on Personio and the database, not CPU; one process with
    # many threads keeps hundreds of companies busy on a 2-core machine.
    return [
        sys.executable, "-m", "celery", "-A", "worker", "worker",
        "--pool", "threads",
        "--concurrency", str(concurrency or settings.worker_concurrency),
        "--queues", ",".join(ALL_QUEUES),
        "--loglevel", loglevel or settings.log_level,
        "--events",
        "--without-gossip", "--without-mingle",
        "--hostname", "personio-sync@%h",
    ]


def beat_command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", settings.log_level]


def flower_command(settings: Settings) -> list[str]:
    """Flower without credentials on its command line (``ps`` shows argv to every user): it gets
    them from the settings or the 0600 password file (worker/flower.py), and only /healthcheck
    answers without them."""
    flower_basic_auth(settings)  # generate the password file now, so `up` can print it
    return [
        sys.executable, "-m", "celery", "-A", "worker", "flower",
        f"--address={settings.flower_address}",
        f"--port={settings.flower_port}",
        "--purge_offline_workers=60",
        "--max_tasks=10000",
        f"--db={settings.data_dir / 'flower.db'}",
        "--persistent=False",
    ]


def describe_exit(returncode: int) -> str:
    """``status 1`` or ``signal SIGKILL`` (a negative return code is the signal that ended it)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


# --------------------------------------------------------------------------- process groups
# The one implementation of "start children, wait until they are ready, stop them all", used by
# ``up``/``demo`` (ProcessGroup below), the integration tests (ProcessSet) and the benchmarks
# (LoggedProcess).


class ProcessFailed(RuntimeError):
    """A child exited, or did not become ready in time."""


def spawn(command: list[str], env: Mapping[str, str], log_path: Path | None, *, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, so its whole process group can be signalled.

    Its output is appended to ``log_path`` (inherited from us when None).
    """
    output = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        output = open(log_path, "ab")
    try:
        return subprocess.Popen(
            command, env=dict(env), cwd=cwd, stdout=output, stderr=subprocess.STDOUT if output is not None else None,
            # Own session: a Ctrl-C reaches us once, and we stop the children in order.
            start_new_session=True,
        )
    finally:
        if output is not None:
            output.close()  # the child has its own copy


def signal_group(pgid: int, sig: int) -> None:
    """Signal a child's whole process group; one that is gone already is no error."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_groups(processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every child's group at once, give them ``timeout`` seconds in all, then SIGKILL.

    The SIGKILL goes to each group even when its leader exited, so nothing the child started
    is left behind.
    """
    for process in processes:
        if process.poll() is None:
            signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        signal_group(process.pid, signal.SIGKILL)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL failed
            pass


def wait_for(
    ready: Callable[[], bool],
    timeout: float,
    *,
    problem: Callable[[], str | None] = lambda: None,
    error: type[Exception] = ProcessFailed,
    interval: float = 0.05,
) -> bool:
    """Poll ``ready`` until it is true (True) or ``timeout`` passed (False).

    ``problem`` is asked first on every round; a sentence from it (a child died) ends the
    wait at once with ``error(sentence)``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sentence = problem()
        if sentence:
            raise error(sentence)
        if ready():
            return True
        time.sleep(interval)
    return False


class LoggedProcess:
    """A child in its own process group, logging to its own file."""

    #: What a failed wait raises (a test harness may prefer its own error).
    failure: type[Exception] = ProcessFailed

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log_path: Path, *, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.popen = spawn(command, env, log_path, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def exited(self) -> str | None:
        """None while it runs; afterwards how it ended, with the end of its log."""
        if self.alive():
            return None
        return f"{self.name} exited with status {self.popen.returncode}:\n{self.log_tail()}"

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Until ``ready()``; raises :attr:`failure` when the child exits or ``timeout`` passes."""
        if not wait_for(ready, timeout, problem=self.exited, error=self.failure):
            raise self.failure(f"{self.name} did not {what} within {timeout:.0f}s:\n{self.log_tail()}")

    def wait_for_log(self, marker: bytes, timeout: float) -> None:
        """Until ``marker`` shows in the end of the log (the last 50 kB)."""
        self.wait_until(lambda: marker in self.log_path.read_bytes()[-50_000:], timeout, f"log {marker!r}")

    def terminate(self) -> None:
        if self.alive():
            signal_group(self.pid, signal.SIGTERM)

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL for the whole group after ``timeout``."""
        stop_groups([self.popen], timeout)


@dataclass
class ProcessSet:
    """Named children started with a log file each (``<log_dir>/<name>.log``), stopped together."""

    env: Mapping[str, str]
    log_dir: Path
    cwd: Path | None = None
    kind: type[LoggedProcess] = LoggedProcess
    children: dict[str, LoggedProcess] = field(default_factory=dict)

    def start(self, name: str, command: list[str], *, extra_env: Mapping[str, str] | None = None) -> LoggedProcess:
        env = {**self.env, **(extra_env or {})}
        child = self.kind(name, command, env, self.log_dir / f"{name}.log", cwd=self.cwd)
        self.children[name] = child
        return child

    def check(self) -> None:
        """Raise the child's failure for the first child that is not running."""
        for child in self.children.values():
            sentence = child.exited()
            if sentence:
                raise child.failure(sentence)

    def stop(self, timeout: float = 20.0) -> None:
        stop_groups([child.popen for child in self.children.values()], timeout)


@dataclass
class Child:
    name: str
    command: list[str]
    to_log: bool
    process: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0
    # Exits in a row that came sooner than ``stable_after`` after the start: the backoff exponent.
    quick_exits: int = 0
    restart_at: float | None = None


@dataclass
class ProcessGroup:
    """Children started together, restarted one by one, stopped together (Ctrl-C stops every one).

    :meth:`supervise` restarts a child that exited, after a capped exponential backoff
    (``backoff_base`` doubled for every exit in a row that came within ``stable_after`` seconds
    of its start, at most ``backoff_cap``); a child that ran longer than that starts again after
    ``backoff_base``. From ``crash_loop_after`` quick exits in a row on, every further one is
    reported loudly, with the end of the child's log, and the child is still restarted.
    """

    env: Mapping[str, str]
    log_dir: Path
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    stable_after: float = 60.0
    crash_loop_after: int = 5
    report: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    alarm: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr, flush=True))
    children: dict[str, Child] = field(default_factory=dict)
    stopped: bool = False

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, command: list[str], *, to_log: bool = True) -> None:
        self.children[name] = Child(name, command, to_log, self._spawn(name, command, to_log), time.monotonic())

    def _spawn(self, name: str, command: list[str], to_log: bool) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return spawn(command, self.env, self.log_file(name) if to_log else None)

    def pid(self, name: str) -> int:
        return self.children[name].process.pid

    def check(self) -> str | None:
        """The first child that is not running, as a sentence (used while the group starts)."""
        for name, child in self.children.items():
            if child.process.poll() is not None:
                return f"{name} exited with {describe_exit(child.process.returncode)}; see {self.log_file(name)}"
        return None

    def supervise(self, now: float | None = None) -> None:
        """Schedule a restart for every child that exited; start those whose backoff is over."""
        if self.stopped:
            return
        now = time.monotonic() if now is None else now
        for child in self.children.values():
            if child.restart_at is None:
                returncode = child.process.poll()
                if returncode is not None:
                    self._schedule_restart(child, returncode, now)
            if child.restart_at is not None and now >= child.restart_at:
                self._restart(child, now)

    def _schedule_restart(self, child: Child, returncode: int, now: float) -> None:
        ran = now - child.started_at
        child.quick_exits = child.quick_exits + 1 if ran < self.stable_after else 0
        delay = min(self.backoff_base * 2 ** max(child.quick_exits - 1, 0), self.backoff_cap)
        child.restart_at = now + delay
        log_file = self.log_file(child.name)
        self.report(f"{child.name} exited with {describe_exit(returncode)} after {ran:.0f} s; restarting it in {delay:.0f} s; see {log_file}")
        if child.quick_exits >= self.crash_loop_after:
            tail = _tail(log_file) if child.to_log else ""
            self.alarm(
                "\n".join([
                    "!" * 78,
                    f"!! {child.name} KEEPS CRASHING: {child.quick_exits} exits in a row, each within {self.stable_after:.0f} s of its start",
                    f"!! (last: {describe_exit(returncode)}). Still restarting it, every {delay:.0f} s at most; fix the cause.",
                    f"!! End of {log_file}:",
                    *("!!   " + line for line in tail.splitlines()),
                    "!" * 78,
                ])
            )

    def _restart(self, child: Child, now: float) -> None:
        if child.to_log:
            with open(self.log_file(child.name), "ab") as log:
                log.write(f"\n----- personio-sync up: starting {child.name} again (restart {child.restarts + 1}) -----\n".encode())
        child.process = self._spawn(child.name, child.command, child.to_log)
        child.started_at = now
        child.restart_at = None
        child.restarts += 1
        self.report(f"{child.name} started again (pid {child.process.pid}, restart {child.restarts})")

    def stop(self, timeout: float = 20.0) -> None:
        self.stopped = True
        for child in self.children.values():
            child.restart_at = None
        stop_groups([child.process for child in self.children.values()], timeout)

    def wait_for_log(self, name: str, marker: bytes, timeout: float) -> None:
        """Until ``marker`` shows in the end of child ``name``'s log; a child that exits meanwhile
        raises :class:`ProcessFailed` naming it (while the group starts that is a setup problem)."""
        log_file = self.log_file(name)
        if not wait_for(lambda: log_file.exists() and marker in log_file.read_bytes()[-20000:], timeout, problem=self.check, interval=0.2):
            raise ProcessFailed(f"the {name} did not become ready within {timeout:.0f}s; see {log_file}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 8192, 0))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
