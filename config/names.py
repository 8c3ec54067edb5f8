"""The names other processes see: Celery task and queue names, Redis keys, event types.

This is the bottom layer of the contract: the main app, Flower, the dead-letter tools and
every worker agree on these strings, so they are spelled once, here, and imported.
"""

from __future__ import annotations

# The main app's queue (a Redis list of the same name) and the worker's internal queues.
INTAKE_QUEUE = "personio-sync"
INTERACTIVE_QUEUE = "personio-sync.interactive"
BACKFILL_QUEUE = "personio-sync.backfill"
MAINTENANCE_QUEUE = "personio-sync.maintenance"
ALL_QUEUES = (INTAKE_QUEUE, INTERACTIVE_QUEUE, BACKFILL_QUEUE, MAINTENANCE_QUEUE)

# Celery task names (part of the message contract for the first two).
UPLOAD_TASK = "personio_sync.upload_candidate"
BACKFILL_TASK = "personio_sync.start_backfill"
# The chunked backfill contract (README, "Backfills"): chunks, seal, and the operator's steering.
BACKFILL_CHUNK_TASK = "personio_sync.add_to_backfill"
BACKFILL_SEAL_TASK = "personio_sync.seal_backfill"
BACKFILL_PAUSE_TASK = "personio_sync.pause_backfill"
BACKFILL_RESUME_TASK = "personio_sync.resume_backfill"
BACKFILL_CANCEL_TASK = "personio_sync.cancel_backfill"
BACKFILL_PROGRESS_TASK = "personio_sync.backfill_progress"  # beat: throttled progress and completion events
PROCESS_UPLOAD_TASK = "personio_sync.process_upload"
DISPATCH_CONNECTION_TASK = "personio_sync.dispatch_connection"
PUMP_TASK = "personio_sync.pump"
RECONCILE_TASK = "personio_sync.reconcile"
REFRESH_FEED_TASK = "personio_sync.refresh_feed"
CHECK_HEALTH_TASK = "personio_sync.check_health"
REFRESH_ALL_FEEDS_TASK = "personio_sync.refresh_all_feeds"
CHECK_ALL_HEALTH_TASK = "personio_sync.check_all_health"
RELAY_EVENTS_TASK = "personio_sync.relay_events"
PING_TASK = "personio_sync.ping"  # `personio-sync health`: proves a worker consumes a queue
RETENTION_TASK = "personio_sync.purge_personal_data"

# Limits of one add_to_backfill chunk (part of the contract: the producer packs chunks to them,
# the worker refuses a chunk above them). Bytes are the chunk's candidates as compact JSON.
BACKFILL_CHUNK_MAX_CANDIDATES = 500
BACKFILL_CHUNK_MAX_BYTES = 16 * 1024 * 1024
BACKFILL_ID_MAX_LENGTH = 64

# What each task accepts as positional arguments (no task takes keyword arguments). The
# worker's transport refuses any other call before Celery sees it, so a message that would
# only crash inside a task is dead-lettered with a reason instead; a test keeps this table
# equal to the task functions' own signatures.
TASK_ARGUMENTS: dict[str, tuple[type, ...]] = {
    UPLOAD_TASK: (object,),  # the request is validated by the task itself, field by field
    BACKFILL_TASK: (object,),  # {"backfill_id", "account_id", "project_id", "expected_total"?} (or the old form with candidates)
    BACKFILL_CHUNK_TASK: (object,),  # {"backfill_id", "chunk_index", "candidates"}
    BACKFILL_SEAL_TASK: (object,),  # {"backfill_id", "chunk_count"?}
    BACKFILL_PAUSE_TASK: (str,),  # backfill id
    BACKFILL_RESUME_TASK: (str,),
    BACKFILL_CANCEL_TASK: (str,),
    BACKFILL_PROGRESS_TASK: (),
    PROCESS_UPLOAD_TASK: (int, str),
    DISPATCH_CONNECTION_TASK: (int,),
    PUMP_TASK: (),
    RECONCILE_TASK: (),
    REFRESH_FEED_TASK: (int,),
    CHECK_HEALTH_TASK: (int,),
    REFRESH_ALL_FEEDS_TASK: (),
    CHECK_ALL_HEALTH_TASK: (),
    RELAY_EVENTS_TASK: (),
    PING_TASK: (str, str),  # token, the queue it was sent to
    RETENTION_TASK: (),
}

# Redis keys.
KEY_PREFIX = "personio-sync"
EVENTS_STREAM = f"{KEY_PREFIX}:events"
DEAD_LETTERS_KEY = f"{KEY_PREFIX}:dead-letters"
# Items popped from a queue, kept until kombu has recorded them (see worker/transport.py).
HOLDING_KEY = f"{KEY_PREFIX}:holding"
HOLDING_INDEX_KEY = f"{KEY_PREFIX}:holding_index"
WAKE_KEY = f"{KEY_PREFIX}:wake:{{connection_id}}"
PUMP_LOCK_KEY = f"{KEY_PREFIX}:lock:pump"
RETENTION_LOCK_KEY = f"{KEY_PREFIX}:lock:retention"
CONNECTION_LOCK_KEY = f"{KEY_PREFIX}:lock:{{kind}}:{{connection_id}}"
REDBEAT_PREFIX = f"{KEY_PREFIX}:redbeat"
RATE_LIMIT_PREFIX = f"{KEY_PREFIX}:rl"
# Counters and histograms every worker adds to, read by `personio-sync metrics` (worker/metrics.py).
METRICS_KEY = f"{KEY_PREFIX}:metrics"
# When each periodic task last finished (task name -> unix time), for metrics and `health`.
HEARTBEATS_KEY = f"{KEY_PREFIX}:heartbeats"
# Round-trips of `personio-sync health`'s ping task: one short-lived key per ping.
PING_KEY = f"{KEY_PREFIX}:ping:{{token}}"
# kombu's own keys for messages delivered to a worker and not yet acknowledged (its defaults;
# `personio-sync forget` looks there too), and the separator of its priority lists.
KOMBU_UNACKED_KEY = "unacked"
KOMBU_UNACKED_INDEX_KEY = "unacked_index"
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"

# Event types on the events stream.
EVENT_UPLOAD_FINISHED = "upload.finished"
EVENT_UPLOAD_INVALID = "upload.invalid"
EVENT_CONNECTION_HEALTH = "connection.health"
EVENT_MESSAGE_DEAD_LETTERED = "message.dead_lettered"
EVENT_BACKFILL_PROGRESS = "backfill.progress"
EVENT_BACKFILL_FINISHED = "backfill.finished"
EVENT_BACKFILL_REFUSED = "backfill.refused"
EVENT_RETENTION_PURGED = "retention.purged"
