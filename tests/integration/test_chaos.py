"""The chaos run at CI size: workers, beat and Redis killed while uploads flow (see bench/chaos.py).

Real processes against a private redis-server and the stand-in, so it is an integration test;
it runs in about a minute on a 2-core machine. ``make chaos`` runs the full size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import CI, run_chaos

pytestmark = pytest.mark.integration


@pytest.mark.timeout(330)
def test_chaos_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    result = run_chaos(CI, data_dir=tmp_path / "chaos")
    print(result.report())
    assert result.ok, result.report()
