"""The naive design the benchmark compares against: Celery ``rate_limit`` plus autoretry on 429.

This is what a textbook Celery integration of a rate-limited API looks like, and what the
issue asks to measure side by side with personio-sync. It is a benchmark fixture, not
product code. One task per upload: it uploads the CV, then posts the application.

* ``rate_limit`` is the per-company budget expressed in uploads (Personio's 20 requests per
  60 s, two requests per upload -> ``"10/m"``), scaled to the time-scaled budget of the run
  (20/2s -> ``"5/s"``). Celery applies it per worker instance and per task type, not per
  company (docs/reliability.md, "Shared rate limit").
* ``autoretry_for`` a 429 with exponential backoff and full jitter (Celery's
  ``retry_backoff``/``retry_jitter``), base = the lock-out, cap = ten lock-outs.
* The backlog lives in the broker: every queued upload is a Redis message, in one FIFO queue.

Started by the benchmark as its own worker, with Celery's default pool::

    celery -A bench.naive worker --pool prefork --concurrency $(nproc) --queues bench-naive

Caveat of the time-scaled run: Celery's rate_limit does not hold sub-second spacing against
Redis for long (at 5/s it settles at about one task per 1.15 s after ~45 tasks; the threads
pool is worse), which Personio's real pacing (one upload per 6 s) would not expose. See
bench/README.md.

Configuration comes from the environment the benchmark sets (BENCH_NAIVE_*). Outcomes
are written to the Redis hash ``bench-naive:done`` (request_id -> "epoch|outcome") — the
naive design has no database, so this hash is its only status store.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from typing import Any, cast

import redis
import requests
from celery import Celery, Task

QUEUE = "bench-naive"
TASK = "bench_naive.upload"
DONE_KEY = "bench-naive:done"
TOKENS_KEY = "bench-naive:tokens"

BROKER_URL = os.environ.get("BENCH_NAIVE_BROKER_URL", "redis://127.0.0.1:6379/14")
REDIS_URL = os.environ.get("BENCH_NAIVE_REDIS_URL", BROKER_URL)
API_URL = os.environ.get("BENCH_NAIVE_API_URL", "http://127.0.0.1:8765").rstrip("/")
RATE_LIMIT = os.environ.get("BENCH_NAIVE_RATE_LIMIT", "10/m")
RETRY_BACKOFF = int(os.environ.get("BENCH_NAIVE_RETRY_BACKOFF", "60"))
RETRY_BACKOFF_MAX = int(os.environ.get("BENCH_NAIVE_RETRY_BACKOFF_MAX", "600"))
MAX_RETRIES = int(os.environ.get("BENCH_NAIVE_MAX_RETRIES", "8"))

log = logging.getLogger(__name__)

app = Celery("bench_naive", broker=BROKER_URL, set_as_current=False)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


class RateLimited(Exception):
    """Personio answered 429."""


_local = threading.local()
_tokens: dict[str, str] = {}
_redis_lock = threading.Lock()
_redis: redis.Redis | None = None


def _store() -> redis.Redis:
    global _redis
    with _redis_lock:
        if _redis is None:
            _redis = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        return _redis


def _http() -> requests.Session:
    session = getattr(_local, "http", None)
    if session is None:
        session = _local.http = requests.Session()
    return session


def _token(company_id: int) -> str:
    key = str(company_id)
    if key not in _tokens:
        _tokens.update(cast("dict[str, str]", _store().hgetall(TOKENS_KEY)))
    return _tokens[key]


def _record(request_id: str, outcome: str) -> None:
    _store().hset(DONE_KEY, request_id, f"{time.time():.6f}|{outcome}")


class _Recorded(Task):
    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        request = args[0] if args else {}
        _record(str(request.get("request_id")), f"failed:{type(exc).__name__}")


@app.task(
    name=TASK,
    base=_Recorded,
    rate_limit=RATE_LIMIT,
    autoretry_for=(RateLimited,),
    retry_backoff=RETRY_BACKOFF,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def upload(request: dict[str, Any]) -> str:
    company_id = int(request["company_id"])
    headers = {
        "Authorization": f"Bearer {_token(company_id)}",
        "X-Company-ID": str(company_id),
        "X-Personio-App-ID": "BENCH_NAIVE",
        "Accept": "application/json",
    }
    http = _http()
    candidate = request["candidate"]
    response = http.post(
        f"{API_URL}/v1/recruiting/applications/documents",
        files={"file": ("cv.pdf", base64.b64decode(candidate["cv_base64"]), "application/pdf")},
        headers=headers,
        timeout=(5, 30),
    )
    if response.status_code == 429:
        raise RateLimited("documents")
    response.raise_for_status()
    document = response.json()["uuid"]
    body = {
        "first_name": candidate["first_name"],
        "last_name": candidate["last_name"],
        "email": candidate["email"],
        "job_position_id": request["job_position_id"],
        "files": [{"uuid": document, "original_filename": "cv.pdf", "category": "cv"}],
    }
    response = http.post(f"{API_URL}/v1/recruiting/applications", json=body, headers=headers, timeout=(5, 30))
    if response.status_code == 429:
        # The CV is uploaded again on the retry: the naive design keeps no progress.
        raise RateLimited("applications")
    if response.status_code == 201:
        outcome = "submitted"
    elif response.status_code == 400 and "applicant-already-exists" in response.text:
        outcome = "already_in_personio"
    else:
        outcome = f"rejected:{response.status_code}"
    _record(request["request_id"], outcome)
    return outcome
