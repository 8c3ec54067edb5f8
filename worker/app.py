"""The Celery app, built once from the settings (``celery -A worker`` finds it as ``worker.app``).

Why each setting: the comments below and the README's Operations section.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading

from celery import Celery
from kombu import Exchange, Queue

from config import Settings, get_settings
from config.names import (
    ALL_QUEUES,
    BACKFILL_CHUNK_TASK,
    BACKFILL_PROGRESS_TASK,
    BACKFILL_QUEUE,
    BACKFILL_SEAL_TASK,
    BACKFILL_TASK,
    INTAKE_QUEUE,
    INTERACTIVE_QUEUE,
    MAINTENANCE_QUEUE,
    PROCESS_UPLOAD_TASK,
    REDBEAT_PREFIX,
    RETENTION_TASK,
    UPLOAD_TASK,
)
from worker import embedded_redis
from worker.transport import broker_url_for

log = logging.getLogger(__name__)

__all__ = ["ALL_QUEUES", "BACKFILL_QUEUE", "INTAKE_QUEUE", "INTERACTIVE_QUEUE", "MAINTENANCE_QUEUE", "create_app", "get_app"]


# Seconds between retention runs: the purge's precision is days, its batches are short.
RETENTION_INTERVAL = 3600.0

_app: Celery | None = None
_app_lock = threading.Lock()


def get_app() -> Celery:
    """The process's app, created from the settings on first use (also what ``celery -A worker`` gets)."""
    global _app
    with _app_lock:
        if _app is None:
            settings = get_settings()
            if settings.embedded_redis and not embedded_redis.is_running(settings.embedded_redis_socket):
                # A plain `celery -A worker …` never starts Redis itself: say so instead of
                # leaving the operator with a connection-refused loop.
                log.warning(
                    "REDIS_URL is not set and the embedded Redis (%s) is not running: it is started only by "
                    "personio-sync commands (personio-sync up, worker, beat, flower). Start one of them first, "
                    "or set REDIS_URL.", settings.embedded_redis_socket,
                )
            _app = create_app(settings)
        return _app


def create_app(settings: Settings) -> Celery:
    # worker.transport: kombu's Redis transport that dead-letters poison messages and keeps
    # the messages a live worker holds from being redelivered (a visibility heartbeat).
    # worker.connection: a lost broker connection is reconnected, not an AttributeError that ends the worker.
    app = Celery("personio_sync", broker=broker_url_for(settings.broker_url), include=["tasks.uploads", "tasks.maintenance", "tasks.connections", "tasks.health", "tasks.backfills"],
                 amqp="worker.connection:AMQP")
    transport = {
        # With the heartbeat, this is how long a killed worker's messages stay invisible.
        "visibility_timeout": settings.visibility_timeout,
        # kombu >= 5.7: sweep unacked messages every few seconds instead of every ~100 s.
        "unacked_restore_interval": min(10, max(int(settings.visibility_timeout / 3), 1)),
        "unacked_restore_throttle": 1,
        "events_stream": settings.events_stream,
    }
    if settings.broker_url.startswith("rediss://"):
        # kombu verifies nothing for rediss:// unless told; we always verify the server.
        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    app.conf.update(
        broker_transport_options=transport,
        # Every queue is declared, so a plain `celery -A worker worker` consumes all of them.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ALL_QUEUES],
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a Redis restart or outage of any length: reconnect, never give up
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,  # the database holds every outcome
        task_acks_late=True,  # tasks are idempotent (leases, request_id); a crash re-runs them
        task_reject_on_worker_lost=True,  # ... and a killed pool process requeues instead of acking
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # On SIGTERM, running steps get this long to finish before unacked messages go back.
        worker_soft_shutdown_timeout=30,
        # Only wake-up timers are ETA messages (one per company at most); cap them anyway.
        worker_eta_task_limit=10_000,
        worker_send_task_events=True,  # Flower
        task_send_sent_event=True,
        task_default_queue=INTAKE_QUEUE,
        task_routes={
            UPLOAD_TASK: {"queue": INTAKE_QUEUE},
            BACKFILL_TASK: {"queue": INTAKE_QUEUE},
            BACKFILL_CHUNK_TASK: {"queue": INTAKE_QUEUE},
            BACKFILL_SEAL_TASK: {"queue": INTAKE_QUEUE},
            PROCESS_UPLOAD_TASK: {"queue": INTERACTIVE_QUEUE},
            "personio_sync.*": {"queue": MAINTENANCE_QUEUE},
        },
        timezone="UTC",
        enable_utc=True,
        beat_scheduler="worker.beat:RedBeatScheduler",  # RedBeat that survives a Redis restart
        redbeat_redis_url=settings.redis_client_url,
        redbeat_key_prefix=REDBEAT_PREFIX,
        # A crashed beat's lock expires after this; a second beat waits for it.
        redbeat_lock_timeout=max(int(settings.pump_interval * 5), 30),
        beat_max_loop_interval=min(settings.pump_interval, 5),
        beat_schedule={
            "pump": {"task": "personio_sync.pump", "schedule": settings.pump_interval, "options": {"expires": settings.pump_interval * 2}},
            "reconcile": {"task": "personio_sync.reconcile", "schedule": settings.reconcile_interval, "options": {"expires": settings.reconcile_interval}},
            "refresh-feeds": {"task": "personio_sync.refresh_all_feeds", "schedule": settings.feed_refresh_interval, "options": {"expires": settings.feed_refresh_interval}},
            "check-health": {"task": "personio_sync.check_all_health", "schedule": settings.health_check_interval, "options": {"expires": settings.health_check_interval}},
            "relay-events": {"task": "personio_sync.relay_events", "schedule": settings.events_relay_interval, "options": {"expires": settings.events_relay_interval * 2}},
            "backfill-progress": {"task": BACKFILL_PROGRESS_TASK, "schedule": settings.backfill_progress_interval, "options": {"expires": settings.backfill_progress_interval * 2}},
            # Personal data: hourly; each run works in short batches (services.retention).
            "purge-personal-data": {"task": RETENTION_TASK, "schedule": RETENTION_INTERVAL, "options": {"expires": RETENTION_INTERVAL}},
        },
    )
    # Every process of the app (worker, beat, Flower, `celery -A worker …`): redacted (JSON) logs
    # with the task's ids (worker/logs.py); every task timed and counted (worker/metrics.py).
    from worker.logs import install_celery_logging
    from worker.metrics import install_task_metrics
    from worker.runtime import get_runtime

    install_celery_logging(settings)
    install_task_metrics(lambda: get_runtime().metrics)
    if "flower.app" in sys.modules:
        # Celery's command line loads Flower as a plugin before it loads this app: lock it down,
        # so `celery -A worker flower` too needs credentials on every route (worker/flower.py).
        from worker.flower import lock_down_flower

        lock_down_flower(settings)
    return app
