"""The README's first command as a user runs it: the demo, a crashed child coming back, and Ctrl-C stopping everything."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(PERSONIO_SYNC_DATA_DIR=str(tmp_path / "data"), PERSONIO_SYNC_FLOWER_PORT=str(_free_port()))
    return env


def _personio_sync() -> list[str]:
    return [sys.executable, "-m", "cli.main"]


def _running(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_demo_prints_each_outcome_and_the_cv_in_the_stand_in(tmp_path: Path) -> None:
    result = subprocess.run(_personio_sync() + ["demo", "--exit"], env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "(a candidate with a CV): submitted" in out
    assert "(the same candidate again): already_in_personio" in out
    assert "(a candidate Personio refuses (unknown attribute)): rejected" in out
    assert "(an invalid request (no email)): rejected" in out
    assert "with documents: alex-example-cv.pdf (cv)" in out
    assert "DE: Der Kandidat ist in Personio" in out
    assert not _running(str(tmp_path)), "the demo left processes behind"


def test_up_stops_every_process_it_started_on_ctrl_c(tmp_path: Path) -> None:
    env = _env(tmp_path)
    process = subprocess.Popen(_personio_sync() + ["up", "--with-sandbox"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C" in line or process.poll() is not None:
                break
        assert any(line.startswith("Flower: http://127.0.0.1:") and "password" in line for line in lines), "".join(lines)
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 3, children  # worker, beat, flower
        assert any("redis-server" in line for line in _running(str(tmp_path)))  # the embedded Redis
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0

        def alive() -> list[str]:
            return [pid for pid in children if Path(f"/proc/{pid}").exists()] + _running(str(tmp_path))

        deadline = time.monotonic() + 20
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(), "processes survived Ctrl-C"
    finally:
        if process.poll() is None:  # a failed assertion: still stop the group, not just its head
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_up_restarts_a_killed_worker_and_keeps_the_group_running(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env["PERSONIO_API_URL"] = "http://127.0.0.1:9"  # no stand-in needed, and nothing leaves the machine
    process = subprocess.Popen(_personio_sync() + ["up"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []

    def wait_for(text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                assert process.poll() is None, "up exited:\n" + "".join(seen)
                continue
            seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout:.0f} s:\n" + "".join(seen))

    log = tmp_path / "data" / "logs" / "worker.log"
    try:
        wait_for("Press Ctrl-C", 120)
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 3, children
        worker = next(pid for pid in children if " worker " in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        others = set(children) - {worker}
        os.kill(int(worker), signal.SIGKILL)

        exited = wait_for("worker exited with", 10)
        assert "signal SIGKILL" in exited and "restarting it in 1 s" in exited
        again = wait_for("worker started again", 10)
        new_worker = again.split("pid ")[1].split(",")[0]
        assert new_worker != worker and Path(f"/proc/{new_worker}").exists()
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes().split(b"starting worker again")[-1] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert b" ready." in log.read_bytes().split(b"starting worker again")[-1], log.read_text()[-3000:]

        assert process.poll() is None  # the group kept running
        children = set(subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split())
        assert children == others | {new_worker}  # beat and Flower untouched
        process.send_signal(signal.SIGTERM)  # as a supervisor stops it
        assert process.wait(60) == 0
        deadline = time.monotonic() + 20
        while _running(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(str(tmp_path)), "processes survived SIGTERM"
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
