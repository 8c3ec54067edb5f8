"""The Celery application: ``celery -A worker worker`` (or ``personio-sync worker``).

Importing the package builds nothing: the app is created from the settings on first use, so
importing ``worker.runtime`` or ``worker.transport`` never needs a valid environment. Celery's
``-A worker`` finds it as ``worker.celery`` (``worker.app`` is the module that builds it;
code asks ``worker.app.get_app()``).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "celery":
        from worker.app import get_app

        return get_app()
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
