"""Running the worker, beat and Flower as child processes (``up``, ``demo``)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings
from worker.app import ALL_QUEUES


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


def flower_basic_auth(settings: Settings) -> str:
    """Flower is an admin console that can run tasks: never without a password."""
    if settings.flower_basic_auth:
        return settings.flower_basic_auth
    path = settings.data_dir / "flower-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(18) + "\n")
    return "admin:" + path.read_text().strip()


def flower_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker", "flower",
        f"--address={settings.flower_address}",
        f"--port={settings.flower_port}",
        f"--basic-auth={flower_basic_auth(settings)}",
        "--purge_offline_workers=60",
        "--max_tasks=10000",
        f"--db={settings.data_dir / 'flower.db'}",
        "--persistent=False",
    ]


@dataclass
class ProcessGroup:
    """Children started together and stopped together (Ctrl-C stops every one)."""

    env: Mapping[str, str]
    log_dir: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: list[str], *, to_log: bool = True) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        output = open(self.log_dir / f"{name}.log", "ab") if to_log else None
        self.children[name] = subprocess.Popen(
            command, env=dict(self.env), stdout=output, stderr=subprocess.STDOUT if to_log else None,
            # Own session: a Ctrl-C reaches us once, and we stop the children in order.
            start_new_session=True,
        )

    def check(self) -> str | None:
        for name, child in self.children.items():
            if child.poll() is not None:
                return f"{name} exited with status {child.returncode}; see {self.log_dir / (name + '.log')}"
        return None

    def stop(self, timeout: float = 20.0) -> None:
        for child in self.children.values():
            if child.poll() is None:
                try:
                    os.killpg(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for child in self.children.values():
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                child.wait(remaining)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.wait(5)
