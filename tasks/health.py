"""The ping task of `personio-sync health`: proof that a worker consumes a queue, not only that it runs.

A worker whose consumer stopped after a Redis reconnect still answers ``celery inspect ping``
(a broadcast on another channel); only a message taken from the queue itself shows it consumes.
"""

from __future__ import annotations

import time

from celery import shared_task

from config.names import PING_KEY, PING_TASK
from worker.runtime import get_runtime

#: A ping answer is read within seconds; the key expires by itself.
PING_ANSWER_TTL = 120


@shared_task(name=PING_TASK, acks_late=False, ignore_result=True)
def ping(token: str, queue: str) -> None:
    """Answer ``health``'s ping: note in Redis that a worker took it from ``queue``, and when."""
    get_runtime().redis.set(PING_KEY.format(token=token), f"{queue} {time.time():.3f}", ex=PING_ANSWER_TTL)
