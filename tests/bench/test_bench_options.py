"""bench.run's options for issue 12: answer times, budget, worker processes, extra settings, sizes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import seed
from bench.run import _latency_range, _settings, parse_args
from bench.scenarios import _pump_ticks, _utilisation_by_cycle
from bench.stack import Budget


def test_latency_is_a_range_in_milliseconds() -> None:
    assert _latency_range("50-400") == (0.05, 0.4)
    for wrong in ("400-50", "50", "fast-slow"):
        with pytest.raises(argparse.ArgumentTypeError):
            _latency_range(wrong)


def test_settings_are_personio_names_only() -> None:
    assert _settings(["PERSONIO_SYNC_COMPANY_MAX_IN_FLIGHT=2"]) == {"PERSONIO_SYNC_COMPANY_MAX_IN_FLIGHT": "2"}
    with pytest.raises(SystemExit):
        _settings(["DATABASE_URL=postgresql://elsewhere"])


def test_defaults_keep_the_recorded_setup() -> None:
    args = parse_args([])
    assert (args.latency, args.rate, args.workers, args.setting, args.many_queued) == (None, None, 1, [], None)
    args = parse_args(["--latency", "50-400", "--workers", "2", "--many-companies", "1000", "--many-queued", "1000000", "--rate", "20/60s"])
    assert (args.latency, args.workers, args.many_companies, args.many_queued, args.rate) == ((0.05, 0.4), 2, 1000, 1_000_000, "20/60s")


def test_pump_ticks_are_read_from_every_worker_log_within_the_window(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    at = time.mktime(time.strptime("2026-11-29 18:51:20", "%Y-%m-%d %H:%M:%S"))
    line = "[2026-11-29 18:51:{s},{ms}: INFO/MainProcess] Task personio_sync.pump[abc-1] succeeded in {d}s: 0\n"
    (logs / "worker.log").write_text(line.format(s=20, ms="100", d="0.010") + line.format(s=25, ms="000", d="0.020") + "noise\n")
    (logs / "worker-2.log").write_text(line.format(s=21, ms="500", d="0.030") + line.format(s=40, ms="000", d="9.0"))

    ticks = _pump_ticks(SimpleNamespace(data_dir=tmp_path), at, at + 10)  # type: ignore[arg-type]  # only data_dir is read

    assert ticks == {"pump_ticks": 3, "pump_tick_p50_ms": 20.0, "pump_tick_p95_ms": 29.0}


def test_utilisation_by_cycle_does_not_depend_on_where_the_bursts_fall() -> None:
    company = seed.company_configs(1)[0]
    budget = Budget(limit=4, period=2.0)
    # Bursts of 4 requests every 2.5 s (a window widened by 0.5 s): 0.8 of the budget at any phase.
    times = [cycle * 2.5 + i * 0.01 for cycle in range(20) for i in range(4)]
    stats = {"companies": {str(company.company_id): {"timestamps": times}}}

    for start in (0.0, 1.0, 2.4):
        assert _utilisation_by_cycle(stats, company, start, start + 30.0, budget) == pytest.approx(0.8)
