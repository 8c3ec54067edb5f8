"""``up`` and ``demo``: the whole system as one process group on one machine."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import NoReturn

from cli.processes import (
    ProcessGroup,
    beat_command,
    flower_basic_auth,
    flower_command,
    worker_command,
)
from config import Settings, load_settings
from worker import embedded_redis


def _stop_on_signals() -> None:
    """Ctrl-C, and SIGTERM from a supervisor, stop the whole group the same way.

    Installed explicitly because a shell starts background jobs with SIGINT ignored.
    """

    def interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def run_stack(settings: Settings, *, with_sandbox: bool, demo: bool, sandbox_port: int = 0, exit_after_demo: bool = False) -> int:
    from worker.runtime import Runtime

    _stop_on_signals()
    # What happens to the children is reported as it happens, also into a pipe or a file.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    env = dict(os.environ)
    sandbox = None
    if with_sandbox:
        from sandbox import load_demo_config, start_sandbox

        sandbox = start_sandbox(load_demo_config(), host="127.0.0.1", port=sandbox_port)
        env["PERSONIO_API_URL"] = sandbox.url
        env["PERSONIO_FEED_URL"] = sandbox.feed_url_template
        settings = load_settings(env)
    env["PERSONIO_SYNC_DATA_DIR"] = str(settings.data_dir)

    started_redis = settings.embedded_redis and not embedded_redis.is_running(settings.embedded_redis_socket)
    runtime = Runtime(settings)
    runtime.prepare()
    log_dir = settings.data_dir / "logs"
    for name in ("worker", "beat", "flower"):
        (log_dir / f"{name}.log").unlink(missing_ok=True)
    group = ProcessGroup(env=env, log_dir=log_dir)
    try:
        group.start("worker", worker_command(settings))
        group.start("beat", beat_command(settings))
        group.start("flower", flower_command(settings))
        print(f"personio-sync is starting: Redis {'embedded (' + str(settings.embedded_redis_socket) + ')' if settings.embedded_redis else settings.redis_url}, "
              f"database {settings.database_url.split('@')[-1]}")
        if sandbox is not None:
            print(f"Personio stand-in: {sandbox.url} (jobs feeds at {sandbox.feed_url_template})")
        # Until the worker is first ready, a child that exits stops ``up``: it is a setup problem.
        group.wait_for_log("worker", b" ready.", timeout=90.0)
        print(f"worker ready; logs in {log_dir}")
        if demo:
            from cli.demo import run_demo

            assert sandbox is not None
            ok = run_demo(runtime, sandbox)
            if exit_after_demo:
                return 0 if ok else 1
        user, password = flower_basic_auth(settings).split(":", 1)
        print(f"Flower: http://{settings.flower_address}:{settings.flower_port}/  (user {user}, password {password})")
        print("Press Ctrl-C to stop everything.")
        # From here on a child that exits is started again (capped backoff, see ProcessGroup);
        # only Ctrl-C or SIGTERM ends the group.
        while True:
            group.supervise()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping…")
        return 0
    finally:
        group.stop()
        if sandbox is not None:
            sandbox.stop()
        if started_redis:
            embedded_redis.stop(settings.embedded_redis_socket)
