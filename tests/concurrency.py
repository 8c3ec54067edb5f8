"""Races for tests: the same work started in several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_at_once(work: Callable[[], object], count: int) -> list[BaseException]:
    """Run ``work`` in ``count`` threads released together by a barrier; what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            work()
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors
