"""bench.run's options for issue 12: answer times, budget, worker processes, extra settings, sizes."""

from __future__ import annotations

import argparse

import pytest

from bench.run import _latency_range, _settings, parse_args


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
