"""Smoke test of the benchmark command: the smallest scenario in --quick mode prints every figure.

It checks the *shape* of the output (every figure row, both designs, the JSON file), never a
speed: benchmarks print figures, tests do not assert them. Runs on the embedded defaults; when
REDIS_URL is set it uses db 14 of that server instead (the benchmark flushes the db it uses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.run import NOT_RUN, figure_rows
from bench.scenarios import DESIGNS, QUICK
from bench.stack import Budget

REPO = Path(__file__).resolve().parents[2]
SCENARIO = "saturated"


def _bench_redis_url(url: str) -> str:
    """The same server as REDIS_URL, database 14 (the benchmarks' own)."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket"):
        return url  # a socket URL names no db we could swap safely; use it as given
    return urlunsplit(parts._replace(path="/14"))


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_quick_run_prints_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    command = [sys.executable, "-m", "bench.run", "--quick", "--scenario", SCENARIO, "--output", str(output)]
    if os.environ.get("REDIS_URL"):
        command += ["--redis-url", _bench_redis_url(os.environ["REDIS_URL"])]
    if os.environ.get("DATABASE_URL"):
        command += ["--database-url", os.environ["DATABASE_URL"]]  # a fresh schema, dropped afterwards

    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=220)

    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    table = finished.stdout
    rows = figure_rows(QUICK, Budget())
    for scenario, key, label, _ in rows:
        line = next((l for l in table.splitlines() if l.startswith(label)), None)
        assert line is not None, f"figure {label!r} missing from the table:\n{table}"
        if scenario == SCENARIO:
            assert NOT_RUN not in line and "error" not in line, line
        else:
            assert NOT_RUN in line, line

    results = json.loads(output.read_text())
    assert results["mode"] == "quick"
    assert results["machine"]["nproc"] >= 1 and results["machine"]["python"]
    for scenario, key, _, _ in rows:
        if scenario != SCENARIO:
            continue
        figure = results["figures"][f"{scenario}.{key}"]
        for design in DESIGNS:
            if key == "utilisation_by_cycle" and figure[design] is None:
                continue  # a design that never sent `limit` requests in the window has no cycle to time
            assert isinstance(figure[design], (int, float)), (scenario, key, design, figure)
    for design in DESIGNS:
        assert "error" not in results["results"][SCENARIO][design]
