"""tasks.producer's backfill helpers: chunks within the contract's limits, refused before sending."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.producer import (
    BACKFILL_CHUNK_MAX_BYTES,
    BACKFILL_CHUNK_MAX_CANDIDATES,
    BackfillChunkError,
    backfill_chunks,
    candidate_entry_size,
    send_backfill_chunk,
)


def candidate(n: int, padding: int = 0) -> dict[str, Any]:
    return {"first_name": "Cand", "last_name": f"No{n}", "email": f"c{n}@example.org", "message": "x" * padding}


def test_chunks_hold_at_most_the_candidate_limit_and_keep_the_order() -> None:
    chunks = list(backfill_chunks(candidate(n) for n in range(1234)))

    assert [len(c) for c in chunks] == [BACKFILL_CHUNK_MAX_CANDIDATES, BACKFILL_CHUNK_MAX_CANDIDATES, 234]
    assert [c["last_name"] for chunk in chunks for c in chunk] == [f"No{n}" for n in range(1234)]


def test_chunks_are_packed_to_the_target_size_and_a_large_candidate_goes_alone() -> None:
    entries = [candidate(0, 600), candidate(1, 600), candidate(2, 5000), candidate(3, 600)]

    chunks = list(backfill_chunks(entries, target_bytes=1500))

    assert [[c["last_name"] for c in chunk] for chunk in chunks] == [["No0", "No1"], ["No2"], ["No3"]]
    assert all(sum(candidate_entry_size(c) for c in chunk) <= 1500 for chunk in chunks if len(chunk) > 1)


def test_a_candidate_larger_than_a_chunk_is_refused_with_the_fix() -> None:
    with pytest.raises(BackfillChunkError, match=r"candidate #1: .* send its documents by url"):
        list(backfill_chunks([candidate(0), candidate(1, 3000)], max_bytes=2000))


def test_a_chunk_above_the_limits_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(BackfillChunkError, match="split it"):
        send_backfill_chunk("bf-1", 0, [candidate(n) for n in range(BACKFILL_CHUNK_MAX_CANDIDATES + 1)], broker_url="redis://127.0.0.1:1/0")
    with pytest.raises(BackfillChunkError, match="bytes of JSON"):
        send_backfill_chunk("bf-1", 0, [candidate(0, BACKFILL_CHUNK_MAX_BYTES)], broker_url="redis://127.0.0.1:1/0")
