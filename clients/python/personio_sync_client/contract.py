"""The names, argument shapes and limits of the messages personio-sync accepts from producers.

A copy of the producer part of personio-sync's ``config/names.py`` (this package must not
import the service); personio-sync's test suite checks that both stay equal.
"""

from __future__ import annotations

# The Redis list the main app pushes to (kombu's Redis transport: a list named like the queue).
INTAKE_QUEUE = "personio-sync"

# Celery task names of the messages a producer sends.
UPLOAD_TASK = "personio_sync.upload_candidate"
BACKFILL_TASK = "personio_sync.start_backfill"
BACKFILL_CHUNK_TASK = "personio_sync.add_to_backfill"
BACKFILL_SEAL_TASK = "personio_sync.seal_backfill"
BACKFILL_PAUSE_TASK = "personio_sync.pause_backfill"
BACKFILL_RESUME_TASK = "personio_sync.resume_backfill"
BACKFILL_CANCEL_TASK = "personio_sync.cancel_backfill"

# The positional arguments each producer task takes (no task takes keyword arguments), as in
# the service's TASK_ARGUMENTS: ``object`` is one JSON object (the message), ``str`` an id. The
# service dead-letters a message of any other shape.
PRODUCER_TASKS: dict[str, tuple[type, ...]] = {
    UPLOAD_TASK: (object,),
    BACKFILL_TASK: (object,),
    BACKFILL_CHUNK_TASK: (object,),
    BACKFILL_SEAL_TASK: (object,),
    BACKFILL_PAUSE_TASK: (str,),
    BACKFILL_RESUME_TASK: (str,),
    BACKFILL_CANCEL_TASK: (str,),
}

# request_id: 1-128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit; a backfill_id
# follows the same rule with at most 64 characters.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
BACKFILL_ID_MAX_LENGTH = 64

# One chunk of a backfill: at most this many candidates and bytes of JSON (compact, UTF-8).
BACKFILL_CHUNK_MAX_CANDIDATES = 500
BACKFILL_CHUNK_MAX_BYTES = 16 * 1024 * 1024
# expected_total and chunk_count; a chunk_index.
BACKFILL_COUNT_MAX = 10_000_000
BACKFILL_CHUNK_INDEX_MAX = 1_000_000
