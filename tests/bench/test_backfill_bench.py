"""Smoke test of ``python -m bench.backfill`` at a small size: it runs and prints every figure.

The figures are printed, never asserted (see bench/README.md for the measured ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.backfill import SMOKE_SIZE

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_backfill_intake_bench_at_smoke_size(tmp_path: Path) -> None:
    output = tmp_path / "backfill.json"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}

    finished = subprocess.run(
        [sys.executable, "-m", "bench.backfill", "--size", str(SMOKE_SIZE), "--drain", "40", "--output", str(output)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=380,
    )

    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "| candidates | CV per candidate |" in finished.stdout
    assert "| at | ETA given | actually remaining | error |" in finished.stdout
    figures = json.loads(output.read_text())
    assert [r["cv_bytes"] > 0 for r in figures["intake"]] == [False, True]
    for result in figures["intake"]:
        assert result["candidates"] == SMOKE_SIZE and result["chunks"] >= 1
        assert {"worker", "producer (bench process)"} <= set(result["peak_rss_mib"])
    drained = figures["drain"]
    assert drained["candidates"] == 40 and set(drained["eta"]) == {"10%", "50%", "90%"}
    assert drained["interactive_outcome"] == "submitted"
