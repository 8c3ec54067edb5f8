"""A chunked backfill through real worker and beat processes against the stand-in, with every process killed."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

from sqlalchemy import func, select

from models import Backfill, BackfillState, Upload, UploadState
from tasks.producer import send_backfill_chunk, send_backfill_seal, send_backfill_start
from tests.integration.conftest import Stack, candidate

CANDIDATES = 60
CHUNK = 20


def _counts(stack: Stack, backfill_id: str) -> dict[UploadState, int]:
    with stack.runtime.session() as session:
        return dict(session.execute(
            select(Upload.state, func.count()).where(Upload.backfill_id == backfill_id).group_by(Upload.state)
        ).tuples().all())


def _kill_everything(stack: Stack) -> None:
    for process in stack.processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_a_chunked_backfill_survives_a_kill_of_every_process_and_sends_each_candidate_once(stack: Stack) -> None:
    backfill_id = "bf-" + uuid.uuid4().hex[:12]
    broker = stack.runtime.settings.broker_url
    emails = [f"{backfill_id}-{n}@example.org" for n in range(CANDIDATES)]
    chunks = [[candidate(email) for email in emails[start:start + CHUNK]] for start in range(0, CANDIDATES, CHUNK)]

    # out of order, one chunk twice, and the start after a chunk
    send_backfill_chunk(backfill_id, 2, chunks[2], broker_url=broker)
    send_backfill_start(backfill_id, account_id="acct-b", project_id="proj-b", expected_total=CANDIDATES, broker_url=broker)
    send_backfill_chunk(backfill_id, 0, chunks[0], broker_url=broker)
    send_backfill_chunk(backfill_id, 1, chunks[1], broker_url=broker)
    send_backfill_chunk(backfill_id, 1, chunks[1], broker_url=broker)
    send_backfill_seal(backfill_id, chunk_count=3, broker_url=broker)

    # some are in Personio, the rest still to go: kill -9 every worker and beat
    deadline = time.monotonic() + 60
    while _counts(stack, backfill_id).get(UploadState.SUBMITTED, 0) < 5:
        assert time.monotonic() < deadline, _counts(stack, backfill_id)
        time.sleep(0.1)
    _kill_everything(stack)
    stack.start_worker("w-after-backfill-kill")
    stack.start_beat("beat-after-backfill-kill")

    deadline = time.monotonic() + 120
    while True:
        with stack.runtime.session() as session:
            state = session.scalar(select(Backfill.state).where(Backfill.id == backfill_id))
        if state == BackfillState.FINISHED:
            break
        assert time.monotonic() < deadline, (state, _counts(stack, backfill_id))
        time.sleep(0.25)

    assert _counts(stack, backfill_id) == {UploadState.SUBMITTED: CANDIDATES}
    sent = [a["email"] for a in stack.sandbox.state.applications() if a["email"].startswith(backfill_id)]
    assert sorted(sent) == sorted(emails)  # each candidate exactly once
    client = stack.runtime.redis
    finished = [
        fields for _, fields in client.xrange(stack.runtime.settings.events_stream)
        if fields.get(b"type", fields.get("type")) in (b"backfill.finished", "backfill.finished")
        and fields.get(b"backfill_id", fields.get("backfill_id")) in (backfill_id, backfill_id.encode())
    ]
    assert len(finished) == 1
    counts = finished[0].get(b"counts", finished[0].get("counts"))
    assert json.loads(counts) == {"submitted": CANDIDATES}
