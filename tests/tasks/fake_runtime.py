"""A stand-in for the worker runtime, for testing task wrappers without a worker, database or Redis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from types import ModuleType, SimpleNamespace
from typing import Any

import fakeredis
import pytest

from config import load_settings


@contextlib.contextmanager
def _placeholder_session() -> Iterator[object]:
    yield object()  # the stubbed services never touch it


def install_fake_runtime(
    monkeypatch: pytest.MonkeyPatch, *modules: ModuleType, environ: Mapping[str, str] | None = None, **parts: Any
) -> SimpleNamespace:
    """Make ``get_runtime()`` of each task module return a fake.

    The fake has settings read from ``environ``, an in-memory Redis, a ``session()`` that yields a
    placeholder, and whatever else the tasks under test use (``parts``).
    """
    fake = SimpleNamespace(
        settings=load_settings(dict(environ or {})),
        redis=fakeredis.FakeRedis(decode_responses=True),
        session=_placeholder_session,
        **parts,
    )
    for module in modules:
        monkeypatch.setattr(module, "get_runtime", lambda: fake)
    return fake
