"""The Celery app, built once from the settings (``celery -A worker`` finds it as ``worker.app``).

Why each setting: see reliability.md §1.7 and the README's Operations section.
"""

from __future__ import annotations

from celery import Celery

from config import Settings
from tasks.producer import BACKFILL_TASK, INTAKE_QUEUE, UPLOAD_TASK

INTERACTIVE_QUEUE = "personio-sync.interactive"
BACKFILL_QUEUE = "personio-sync.backfill"
MAINTENANCE_QUEUE = "personio-sync.maintenance"
ALL_QUEUES = (INTAKE_QUEUE, INTERACTIVE_QUEUE, BACKFILL_QUEUE, MAINTENANCE_QUEUE)


def create_app(settings: Settings) -> Celery:
    app = Celery("personio_sync", broker=settings.broker_url, include=["tasks.uploads", "tasks.maintenance", "tasks.connections"])
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        # kombu >= 5.7: sweep unacked messages every 10 s instead of every ~100 s.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
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
            "personio_sync.process_upload": {"queue": INTERACTIVE_QUEUE},
            "personio_sync.*": {"queue": MAINTENANCE_QUEUE},
        },
        timezone="UTC",
        enable_utc=True,
        beat_scheduler="redbeat.RedBeatScheduler",
        redbeat_redis_url=settings.redis_client_url,
        redbeat_key_prefix="personio-sync:redbeat",
        # A crashed beat's lock expires after this; a second beat waits for it.
        redbeat_lock_timeout=max(int(settings.pump_interval * 5), 30),
        beat_max_loop_interval=min(settings.pump_interval, 5),
        beat_schedule={
            "pump": {"task": "personio_sync.pump", "schedule": settings.pump_interval, "options": {"expires": settings.pump_interval * 2}},
            "reconcile": {"task": "personio_sync.reconcile", "schedule": settings.reconcile_interval, "options": {"expires": settings.reconcile_interval}},
            "refresh-feeds": {"task": "personio_sync.refresh_all_feeds", "schedule": settings.feed_refresh_interval, "options": {"expires": settings.feed_refresh_interval}},
            "check-health": {"task": "personio_sync.check_all_health", "schedule": settings.health_check_interval, "options": {"expires": settings.health_check_interval}},
        },
    )
    return app
