"""Fixtures for the CLI tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_settings
from worker import embedded_redis


@pytest.fixture()
def real_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The embedded Redis and SQLite of a fresh data directory (never a shared server's queue); yields the directory."""
    monkeypatch.setenv("PERSONIO_SYNC_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        yield tmp_path
    finally:
        settings = load_settings()
        if settings.embedded_redis:
            embedded_redis.stop(settings.embedded_redis_socket)
