"""Smoke test of bench/retention.py at its smallest size: every figure is printed, no bytes are left.

It checks the output's shape and the one figure the benchmark exists for (no document bytes left
after retention), never a speed. Runs on the embedded defaults (REDIS_URL and DATABASE_URL unset).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_the_smallest_run_prints_every_figure_and_leaves_no_document_bytes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    command = [sys.executable, "-m", "bench.retention", "--uploads", "12", "--companies", "3", "--cv-kib", "64",
               "--output", str(tmp_path / "retention.json")]

    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=220)

    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    lines = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in finished.stdout.splitlines() if ": " in line}
    assert lines["outcomes"].startswith("submitted 12 in ")
    assert lines["document bytes in the database, queued"] == str(12 * 64 * 1024)
    assert lines["document bytes in the database, after sending"] == "0"
    assert lines["document bytes in the database, after retention"] == "0"
    assert lines["uploads still holding candidate data after retention"] == "0"
    for label in ("queued", "after sending", "after retention", "after VACUUM"):
        assert f"database size, {label}" in lines, label
    assert (tmp_path / "retention.json").exists()
