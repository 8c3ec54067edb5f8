"""``up``'s process group: a child that exits is started again after a capped backoff."""

from __future__ import annotations

import sys
from pathlib import Path

from cli.processes import Child, ProcessGroup, describe_exit

CRASH = [sys.executable, "-c", "import sys; print('cannot reach the database', flush=True); sys.exit(3)"]
RUN = [sys.executable, "-c", "import time; time.sleep(60)"]


def _group(tmp_path: Path) -> tuple[ProcessGroup, list[str], list[str]]:
    reports: list[str] = []
    alarms: list[str] = []
    group = ProcessGroup(env={}, log_dir=tmp_path, backoff_base=1.0, backoff_cap=60.0, stable_after=60.0, crash_loop_after=5,
                         report=reports.append, alarm=alarms.append)
    return group, reports, alarms


def _exit_after(group: ProcessGroup, child: Child, seconds: float) -> float:
    """Let the child's (quick) exit be seen ``seconds`` after its start; the restart delay chosen."""
    child.process.wait(30)
    now = child.started_at + seconds
    group.supervise(now)
    assert child.restart_at is not None
    return round(child.restart_at - now, 6)


def test_a_crashing_child_is_restarted_with_capped_exponential_backoff_and_reported_loudly(tmp_path: Path) -> None:
    group, reports, alarms = _group(tmp_path)
    group.start("worker", CRASH)
    child = group.children["worker"]
    delays = []
    try:
        for _ in range(9):
            delays.append(_exit_after(group, child, 0.5))
            pid = child.process.pid
            group.supervise(child.restart_at)  # the backoff is over: started again
            assert child.restart_at is None and child.process.pid != pid
    finally:
        group.stop()
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert child.restarts == 9
    assert reports[0] == f"worker exited with status 3 after 0 s; restarting it in 1 s; see {tmp_path / 'worker.log'}"
    assert "worker started again (pid" in reports[1]
    # Quiet for the first four quick exits, then loud on every further one, with the log's end.
    assert len(alarms) == 5
    assert "worker KEEPS CRASHING: 5 exits in a row" in alarms[0] and "status 3" in alarms[0]
    assert "cannot reach the database" in alarms[0]
    assert "----- personio-sync up: starting worker again (restart 9) -----" in (tmp_path / "worker.log").read_text()


def test_a_child_that_ran_for_a_while_is_restarted_after_the_base_delay(tmp_path: Path) -> None:
    group, reports, alarms = _group(tmp_path)
    group.start("beat", CRASH)
    child = group.children["beat"]
    try:
        assert _exit_after(group, child, 1) == 1
        group.supervise(child.restart_at)
        assert _exit_after(group, child, 1) == 2
        group.supervise(child.restart_at)
        assert _exit_after(group, child, 120) == 1  # it had run for two minutes: not a crash loop
        assert child.quick_exits == 0
    finally:
        group.stop()
    assert not alarms


def test_stop_ends_running_children_and_cancels_pending_restarts(tmp_path: Path) -> None:
    group, reports, _ = _group(tmp_path)
    group.start("flower", RUN)
    group.start("beat", CRASH)
    beat = group.children["beat"]
    _exit_after(group, beat, 0.1)
    flower = group.children["flower"].process
    group.stop(timeout=10)
    assert flower.poll() is not None
    assert beat.restart_at is None
    group.supervise(beat.started_at + 3600)
    assert beat.restarts == 0 and beat.restart_at is None  # nothing comes back after stop
    assert group.children["flower"].restart_at is None


def test_exit_descriptions() -> None:
    assert describe_exit(0) == "status 0"
    assert describe_exit(1) == "status 1"
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(-15) == "signal SIGTERM"
