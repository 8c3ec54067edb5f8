"""The names and argument shapes of the messages personio-sync accepts from producers.

A copy of the producer part of personio-sync's ``config/names.py`` (this package must not
import the service); personio-sync's test suite checks that both stay equal.
"""

from __future__ import annotations

# The Redis list the main app pushes to (kombu's Redis transport: a list named like the queue).
INTAKE_QUEUE = "personio-sync"

# Celery task names of the messages a producer sends.
UPLOAD_TASK = "personio_sync.upload_candidate"
BACKFILL_TASK = "personio_sync.start_backfill"

# How many positional arguments each producer task takes (no task takes keyword arguments):
# the service dead-letters a message with any other shape.
PRODUCER_TASKS: dict[str, int] = {
    UPLOAD_TASK: 1,
    BACKFILL_TASK: 1,
}

# request_id (and backfill_id): 1-128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
