"""services.backfill: chunked intake, steering, status, progress, re-drive and the turn order."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import (
    ApplicationClaim,
    Backfill,
    BackfillState,
    Priority,
    Upload,
    UploadDocument,
    UploadState,
)
from ratelimit import CompanyRateLimiter
from services.backfill import (
    CHUNK_MAX_CANDIDATES,
    BackfillNotStarted,
    BackfillStateError,
    CompanyBudget,
    RedriveFilter,
    add_to_backfill,
    backfill_status,
    cancel_backfill,
    list_backfills,
    pause_backfill,
    publish_progress,
    record_backfill,
    redrive_uploads,
    resume_backfill,
    seal_backfill,
    start_backfill,
)
from services.context import UploadPolicy
from services.dispatch import dispatch_connection
from services.events import ListPublisher
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from tests.factories import ACCOUNT, JOB, PROJECT, make_connection, make_link, make_upload

if TYPE_CHECKING:
    from tests.conftest import Clock

BUDGET = CompanyBudget(requests=20, period=60.0)


def candidate(n: int) -> dict[str, Any]:
    return {"first_name": "Cand", "last_name": f"No{n}", "email": f"c{n}@example.org"}


@pytest.fixture
def connection_id(session: Session, cipher: TokenCipher) -> int:
    connection = make_connection(session, cipher)
    make_link(session, connection)
    return connection.id


def start(session: Session, events: ListPublisher, clock: Clock, backfill_id: str = "bf-1", **extra: Any) -> Backfill:
    backfill = start_backfill(session, {"backfill_id": backfill_id, "account_id": ACCOUNT, "project_id": PROJECT, **extra}, events=events, now=clock())
    assert backfill is not None
    session.commit()
    return backfill


def chunk(session: Session, policy: IntakePolicy, events: ListPublisher, clock: Clock, index: int, numbers: range, backfill_id: str = "bf-1") -> int:
    result = add_to_backfill(
        session, {"backfill_id": backfill_id, "chunk_index": index, "candidates": [candidate(n) for n in numbers]}, policy=policy, events=events, now=clock()
    )
    session.commit()
    assert result is not None
    return result.recorded


def status(session: Session, clock: Clock, backfill_id: str = "bf-1") -> dict[str, Any]:
    found = backfill_status(session, backfill_id, budget=BUDGET, now=clock())
    assert found is not None
    return found


def states(session: Session, backfill_id: str = "bf-1") -> dict[str, int]:
    return dict(
        session.execute(select(Upload.state, func.count()).where(Upload.backfill_id == backfill_id).group_by(Upload.state)).tuples().all()
    )


def dispatch(session_factory: sessionmaker[Session], connection_id: int, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> list[int]:
    with session_factory.begin() as session:
        return [c.upload_id for c in dispatch_connection(session, connection_id, policy=policy, limiter=limiter, now=clock()).claimed]


def backfill_of(session_factory: sessionmaker[Session], upload_ids: list[int]) -> list[str | None]:
    with session_factory() as session:
        return [session.get(Upload, upload_id).backfill_id for upload_id in upload_ids]  # type: ignore[union-attr]


def finish_claimed(session_factory: sessionmaker[Session], upload_ids: list[int], clock: Clock) -> None:
    with session_factory.begin() as session:
        session.execute(update(Upload).where(Upload.id.in_(upload_ids)).values(state=UploadState.SUBMITTED, finished_at=clock(), lease_token=None))


# ------------------------------------------------------------------ intake


def test_chunks_twice_and_out_of_order_record_each_candidate_once(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    start(session, events, clock, expected_total=30)

    assert chunk(session, intake_policy, events, clock, 2, range(20, 30)) == 10
    assert chunk(session, intake_policy, events, clock, 0, range(0, 10)) == 10
    assert chunk(session, intake_policy, events, clock, 2, range(20, 30)) == 0  # again
    assert chunk(session, intake_policy, events, clock, 1, range(10, 20)) == 10
    assert chunk(session, intake_policy, events, clock, 0, range(0, 10)) == 0

    assert session.scalar(select(func.count()).select_from(Upload).where(Upload.backfill_id == "bf-1")) == 30
    assert set(session.scalars(select(Upload.priority).where(Upload.backfill_id == "bf-1"))) == {Priority.BACKFILL}
    assert session.scalar(select(Upload.id).where(Upload.request_id == "bf-1:2:9")) is not None
    report = status(session, clock)
    assert (report["total"], report["chunks_received"], report["candidates_received"]) == (30, 3, 30)
    assert sum(report["counts"].values()) == report["total"] == report["done"] + report["remaining"]


def test_a_start_sent_twice_keeps_one_record(session: Session, connection_id: int, events: ListPublisher, clock: Clock) -> None:
    start(session, events, clock)
    start(session, events, clock, expected_total=5)

    assert session.scalar(select(func.count()).select_from(Backfill)) == 1
    assert session.get(Backfill, "bf-1").expected_total == 5  # type: ignore[union-attr]


def test_a_chunk_before_its_start_asks_to_be_retried(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    with pytest.raises(BackfillNotStarted):
        add_to_backfill(session, {"backfill_id": "bf-x", "chunk_index": 0, "candidates": [candidate(1)]}, policy=intake_policy, events=events, now=clock())


def test_a_chunk_over_the_limit_is_refused_whole_with_the_fix(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    start(session, events, clock)

    result = add_to_backfill(
        session, {"backfill_id": "bf-1", "chunk_index": 0, "candidates": [candidate(n) for n in range(CHUNK_MAX_CANDIDATES + 1)]},
        policy=intake_policy, events=events, now=clock(),
    )

    assert result is not None and result.recorded == 0
    assert result.refused is not None and "split it into more chunks" in result.refused
    [refused] = [e for e in events.events if e["type"] == "backfill.refused"]
    assert refused["backfill_id"] == "bf-1" and refused["chunk_index"] == 0 and "candidates:" in refused["errors"][0]
    assert status(session, clock)["refused_chunks"] == 1


@pytest.mark.parametrize("payload", [[], "x", {"backfill_id": "bad id", "chunk_index": 0, "candidates": []}, {"backfill_id": "bf-1", "chunk_index": -1, "candidates": []}])
def test_a_malformed_chunk_is_an_event_not_a_crash(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock, payload: Any) -> None:
    assert add_to_backfill(session, payload, policy=intake_policy, events=events, now=clock()) is None
    assert [e["type"] for e in events.events] == ["backfill.refused"]


def test_invalid_candidates_count_in_the_backfill_as_rejected(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    start(session, events, clock)
    add_to_backfill(session, {"backfill_id": "bf-1", "chunk_index": 0, "candidates": [candidate(1), {"first_name": "no email"}, "not even an object"]},
                    policy=intake_policy, events=events, now=clock())
    session.commit()

    report = status(session, clock)
    assert report["total"] == 3
    assert report["counts"]["rejected"] == 2 and report["counts"]["queued"] == 1


def test_the_single_message_form_still_works_and_keeps_its_request_ids(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    message = {"backfill_id": "bf-old", "account_id": ACCOUNT, "project_id": PROJECT, "candidates": [candidate(1), candidate(2)]}

    assert record_backfill(session, message, policy=intake_policy, events=events, now=clock()) == {connection_id}
    assert record_backfill(session, message, policy=intake_policy, events=events, now=clock()) == set()
    session.commit()

    assert sorted(session.scalars(select(Upload.request_id))) == ["bf-old:0", "bf-old:1"]
    backfill = session.get(Backfill, "bf-old")
    assert backfill is not None and backfill.sealed and backfill.recorded == 2


# ------------------------------------------------------------------ progress and completion


def test_progress_is_throttled_and_completion_is_published_once(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    start(session, events, clock)
    chunk(session, intake_policy, events, clock, 0, range(4))
    ids = list(session.scalars(select(Upload.id).where(Upload.backfill_id == "bf-1").order_by(Upload.id)))
    events.events.clear()

    session.execute(update(Upload).where(Upload.id == ids[0]).values(state=UploadState.SUBMITTED, finished_at=clock()))
    assert publish_progress(session, events=events, now=clock(), interval=5) == 1
    session.execute(update(Upload).where(Upload.id == ids[1]).values(state=UploadState.FAILED, finished_at=clock()))
    assert publish_progress(session, events=events, now=clock() + timedelta(seconds=1), interval=5) == 0  # throttled
    assert publish_progress(session, events=events, now=clock() + timedelta(seconds=6), interval=5) == 1
    assert publish_progress(session, events=events, now=clock() + timedelta(seconds=20), interval=5) == 0  # nothing moved

    session.execute(update(Upload).where(Upload.id.in_(ids[2:])).values(state=UploadState.SUBMITTED, finished_at=clock()))
    assert publish_progress(session, events=events, now=clock() + timedelta(seconds=30), interval=5) == 1  # progress; not sealed: more may come
    assert session.get(Backfill, "bf-1").state == BackfillState.RUNNING  # type: ignore[union-attr]
    seal_backfill(session, {"backfill_id": "bf-1"}, events=events, now=clock())
    assert publish_progress(session, events=events, now=clock() + timedelta(seconds=31), interval=5) == 1
    assert publish_progress(session, events=events, now=clock() + timedelta(seconds=60), interval=5) == 0

    kinds = [e["type"] for e in events.events]
    assert kinds == ["backfill.progress", "backfill.progress", "backfill.progress", "backfill.finished"]
    finished = events.events[-1]
    assert finished["counts"] == {"submitted": 3, "failed": 1} and finished["total"] == 4 and finished["state"] == "finished"
    assert all(set(e) <= {"type", "backfill_id", "account_id", "project_id", "total", "counts", "state", "at"} for e in events.events)
    assert session.get(Backfill, "bf-1").state == BackfillState.FINISHED  # type: ignore[union-attr]


def test_eta_comes_from_the_budget_and_what_remains_documents_included(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    start(session, events, clock)
    cv = {"category": "cv", "filename": "cv.pdf", "content_base64": "JVBERi0xLjQK"}
    add_to_backfill(session, {"backfill_id": "bf-1", "chunk_index": 0, "candidates": [{**candidate(n), "documents": [cv]} for n in range(10)]},
                    policy=intake_policy, events=events, now=clock())
    session.commit()

    report = status(session, clock)

    from services.uploads import upload_status

    one = upload_status(session, "bf-1:0:3")
    assert one is not None and [h["state"] for h in one["history"]] == ["queued"]
    assert one["documents"] == [{"filename": "cv.pdf", "category": "cv", "uploaded": False}] and one["priority"] == "backfill"
    stored = session.scalar(select(UploadDocument).join(Upload).where(Upload.request_id == "bf-1:0:3"))
    assert stored is not None and stored.content == b"%PDF-1.4\n" and stored.size == 9 and stored.sha256
    assert report["remaining_requests"] == 20  # 10 CVs + 10 applications
    assert report["eta_seconds"] == pytest.approx(20 / (20 / 60))  # one minute at 20 requests a minute


def test_eta_counts_the_turns_of_the_other_backfills_of_the_company(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    start(session, events, clock, "bf-a")
    start(session, events, clock, "bf-b")
    chunk(session, intake_policy, events, clock, 0, range(0, 10), "bf-a")
    chunk(session, intake_policy, events, clock, 0, range(10, 14), "bf-b")

    # a has 10 left, b 4: a's turns interleave with b's 4, so a waits 14 slots; b waits 8
    assert status(session, clock, "bf-a")["eta_seconds"] == pytest.approx(14 * 3)
    assert status(session, clock, "bf-b")["eta_seconds"] == pytest.approx(8 * 3)
    assert [b["backfill_id"] for b in list_backfills(session, ACCOUNT, budget=BUDGET, now=clock())] == ["bf-a", "bf-b"]


# ------------------------------------------------------------------ pause, resume, cancel


def test_pause_stops_dispatch_at_once_and_resume_continues(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock, upload_policy: UploadPolicy, limiter: CompanyRateLimiter) -> None:
    start(session, events, clock)
    chunk(session, intake_policy, events, clock, 0, range(6))
    pause_backfill(session, "bf-1", now=clock())
    session.commit()

    assert dispatch(session_factory, connection_id, upload_policy, limiter, clock) == []

    resume_backfill(session, "bf-1", now=clock())
    session.commit()
    assert len(dispatch(session_factory, connection_id, upload_policy, limiter, clock)) == 2


def test_a_paused_backfill_still_finishes_its_half_sent_uploads(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock, upload_policy: UploadPolicy, limiter: CompanyRateLimiter) -> None:
    start(session, events, clock)
    cv = {"category": "cv", "filename": "cv.pdf", "content_base64": "JVBERi0xLjQK"}
    add_to_backfill(session, {"backfill_id": "bf-1", "chunk_index": 0, "candidates": [{**candidate(n), "documents": [cv]} for n in range(3)]},
                    policy=intake_policy, events=events, now=clock())
    half_sent = session.scalar(select(Upload.id).where(Upload.request_id == "bf-1:0:2"))
    session.execute(update(UploadDocument).where(UploadDocument.upload_id == half_sent).values(personio_uuid="00000000-0000-0000-0000-000000000001"))
    pause_backfill(session, "bf-1", now=clock())
    session.commit()

    assert dispatch(session_factory, connection_id, upload_policy, limiter, clock) == [half_sent]


def test_cancel_ends_only_the_not_started_uploads_of_that_backfill(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock, upload_policy: UploadPolicy, limiter: CompanyRateLimiter) -> None:
    start(session, events, clock)
    cv = {"category": "cv", "filename": "cv.pdf", "content_base64": "JVBERi0xLjQK"}
    add_to_backfill(session, {"backfill_id": "bf-1", "chunk_index": 0, "candidates": [{**candidate(n), "documents": [cv]} for n in range(5)]},
                    policy=intake_policy, events=events, now=clock())
    outside = make_upload(session, intake_policy, clock(), "click-1", priority="backfill")
    half_sent = session.scalar(select(Upload.id).where(Upload.request_id == "bf-1:0:4"))
    session.execute(update(UploadDocument).where(UploadDocument.upload_id == half_sent).values(personio_uuid="00000000-0000-0000-0000-000000000001"))
    session.commit()
    events.events.clear()

    ended = 0
    more = True
    while more:
        _, count, more = cancel_backfill(session, "bf-1", events=events, now=clock(), batch=2)
        session.commit()
        ended += count

    assert ended == 4
    assert states(session) == {UploadState.CANCELLED: 4, UploadState.QUEUED: 1}
    assert session.get(Upload, outside).state == UploadState.QUEUED  # type: ignore[union-attr]
    cancelled = [e for e in events.events if e["type"] == "upload.finished"]
    assert len(cancelled) == 4 and {e["outcome"] for e in cancelled} == {"cancelled"}
    assert {e["reason_code"] for e in cancelled} == {"personio-sync.backfill-cancelled"}
    assert all(e["message_en"] and e["message_de"] for e in cancelled)
    session.commit()
    # the half-sent one still goes out (its CV is at Personio), then the click outside it
    assert dispatch(session_factory, connection_id, upload_policy, limiter, clock) == [half_sent, outside]
    with pytest.raises(BackfillStateError):
        resume_backfill(session, "bf-1", now=clock())


# ------------------------------------------------------------------ turn order


def test_backfills_of_one_company_take_turns(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock, limiter: CompanyRateLimiter, upload_policy: UploadPolicy) -> None:
    # given: a big backfill recorded first, then a small one and some loose backfill uploads
    start(session, events, clock, "bf-big")
    chunk(session, intake_policy, events, clock, 0, range(0, 20), "bf-big")
    clock.advance(1)
    start(session, events, clock, "bf-small")
    chunk(session, intake_policy, events, clock, 0, range(100, 103), "bf-small")
    make_upload(session, intake_policy, clock(), "loose-1", priority="backfill", email="loose1@example.org")
    session.commit()

    served: list[str | None] = []
    for _ in range(4):
        claimed = dispatch(session_factory, connection_id, upload_policy, limiter, clock)
        served += backfill_of(session_factory, claimed)
        finish_claimed(session_factory, claimed, clock)
        clock.advance(1)

    # then: not first-come-first-served: every backfill gets a turn in each round
    assert served[:3].count("bf-big") == 1 and served[:3].count("bf-small") == 1 and None in served[:3]
    assert served.count("bf-small") == 3


def test_a_click_goes_before_every_backfill(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock, limiter: CompanyRateLimiter, upload_policy: UploadPolicy) -> None:
    start(session, events, clock, "bf-a")
    chunk(session, intake_policy, events, clock, 0, range(0, 5), "bf-a")
    start(session, events, clock, "bf-b")
    chunk(session, intake_policy, events, clock, 0, range(10, 15), "bf-b")
    clock.advance(5)
    click = make_upload(session, intake_policy, clock(), "click-1", email="click@example.org")
    session.commit()

    assert dispatch(session_factory, connection_id, upload_policy, limiter, clock)[0] == click


# ------------------------------------------------------------------ re-drive


def test_redrive_queues_failed_uploads_and_skips_those_already_in_personio(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    failed = [make_upload(session, intake_policy, clock(), f"r{n}", email=f"f{n}@example.org") for n in range(3)]
    done = make_upload(session, intake_policy, clock(), "r-done", email="f0@example.org")
    session.execute(update(Upload).where(Upload.id.in_(failed)).values(state=UploadState.FAILED, finished_at=clock(), reason_code="personio-sync.retries-exhausted"))
    session.execute(update(Upload).where(Upload.id == done).values(state=UploadState.SUBMITTED, finished_at=clock(), job_position_id=JOB))
    session.add(ApplicationClaim(connection_id=connection_id, job_position_id=JOB, email_normalized="f0@example.org", upload_id=done))
    session.commit()

    backfill, queued, more = redrive_uploads(session, RedriveFilter(ACCOUNT, UploadState.FAILED, reason_code="personio-sync.retries-exhausted"), now=clock(), backfill_id="redrive-1")
    session.commit()

    assert (queued, more, backfill.skipped) == (2, False, 1)
    assert session.get(Upload, failed[0]).state == UploadState.FAILED  # type: ignore[union-attr]
    for upload_id in failed[1:]:
        upload = session.get(Upload, upload_id)
        assert upload is not None
        assert (upload.state, upload.backfill_id, upload.priority, upload.reason_code, upload.attempts) == (UploadState.QUEUED, "redrive-1", Priority.BACKFILL, None, 0)
    report = status(session, clock, "redrive-1")
    assert report["kind"] == "redrive" and report["skipped_already_in_personio"] == 1 and report["sealed"]


def test_redrive_filters_by_time_window_and_project(session: Session, connection_id: int, intake_policy: IntakePolicy, clock: Clock) -> None:
    early = make_upload(session, intake_policy, clock(), "early", email="e@example.org")
    late = make_upload(session, intake_policy, clock(), "late", email="l@example.org")
    other = make_upload(session, intake_policy, clock(), "other", email="o@example.org", project_id="proj-2")
    session.execute(update(Upload).where(Upload.id == early).values(state=UploadState.REJECTED, finished_at=clock() - timedelta(hours=2)))
    session.execute(update(Upload).where(Upload.id.in_([late, other])).values(state=UploadState.REJECTED, finished_at=clock()))
    session.commit()

    _, queued, _ = redrive_uploads(session, RedriveFilter(ACCOUNT, UploadState.REJECTED, project_id=PROJECT, since=clock() - timedelta(hours=1)), now=clock())

    assert queued == 1
    assert session.get(Upload, late).state == UploadState.QUEUED  # type: ignore[union-attr]
    assert session.get(Upload, early).state == UploadState.REJECTED  # type: ignore[union-attr]
    assert session.get(Upload, other).state == UploadState.REJECTED  # type: ignore[union-attr]


# ------------------------------------------------------------------ the upload step


def no_personio(connection: Any) -> Any:
    raise AssertionError("Personio must not be called for an upload that does not start")


@pytest.mark.parametrize(("steer", "expected"), [("pause", UploadState.QUEUED), ("cancel", UploadState.CANCELLED)])
def test_a_claimed_upload_of_a_backfill_stopped_meanwhile_does_not_start(
    session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, events: ListPublisher,
    clock: Clock, upload_policy: UploadPolicy, limiter: CompanyRateLimiter, steer: str, expected: UploadState,
) -> None:
    from services.context import SyncDeps
    from services.processing import StepOutcome, process_upload

    start(session, events, clock)
    chunk(session, intake_policy, events, clock, 0, range(1))
    with session_factory.begin() as dispatcher:
        [claimed] = dispatch_connection(dispatcher, connection_id, policy=upload_policy, limiter=limiter, now=clock()).claimed
    # the message is on its way when the operator steps in
    with session_factory.begin() as operator:
        if steer == "pause":
            pause_backfill(operator, "bf-1", now=clock())
        else:
            operator.execute(update(Backfill).values(state=BackfillState.CANCELLED))
    session.commit()
    deps = SyncDeps(policy=upload_policy, limiter=limiter, clients=no_personio, events=events, wake=lambda *_: None,
                    fetch_document=lambda url: b"", clock=clock)

    result = process_upload(session, deps, claimed.upload_id, claimed.lease_token)

    upload = session.get(Upload, claimed.upload_id)
    assert upload is not None and upload.state == expected and upload.lease_token is None
    assert result.outcome == (StepOutcome.PARKED if steer == "pause" else StepOutcome.FINISHED)
    assert limiter.usage("1000") == 0
    if steer == "cancel":
        assert upload.reason_code == "personio-sync.backfill-cancelled" and upload.message_de


def test_own_request_ids_are_recorded_once_also_within_a_chunk_and_across_uploads(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    make_upload(session, intake_policy, clock(), "clicked-before", email="before@example.org")
    start(session, events, clock)
    entries = [{"request_id": "own-1", "candidate": candidate(1)}, {"request_id": "own-1", "candidate": candidate(2)},
               {"request_id": "clicked-before", "candidate": candidate(3)}, candidate(4)]

    result = add_to_backfill(session, {"backfill_id": "bf-1", "chunk_index": 0, "candidates": entries}, policy=intake_policy, events=events, now=clock())
    session.commit()

    assert result is not None and result.recorded == 2
    assert sorted(session.scalars(select(Upload.request_id).where(Upload.backfill_id == "bf-1"))) == ["bf-1:0:3", "own-1"]
    assert session.scalar(select(Upload.backfill_id).where(Upload.request_id == "clicked-before")) is None


def test_redrive_leaves_uploads_whose_inline_document_is_gone(session: Session, connection_id: int, intake_policy: IntakePolicy, clock: Clock) -> None:
    from services.backfill import count_unsendable

    cv = {"category": "cv", "filename": "cv.pdf", "content_base64": "JVBERi0xLjQK"}
    gone = make_upload(session, intake_policy, clock(), "gone", email="g@example.org", documents=[cv])
    kept = make_upload(session, intake_policy, clock(), "kept", email="k@example.org", documents=[cv])
    session.execute(update(Upload).where(Upload.id.in_([gone, kept])).values(state=UploadState.FAILED, finished_at=clock()))
    session.execute(update(UploadDocument).where(UploadDocument.upload_id == gone).values(content=None))
    session.commit()
    selection = RedriveFilter(ACCOUNT, UploadState.FAILED)

    assert count_unsendable(session, selection) == 1
    _, queued, more = redrive_uploads(session, selection, now=clock())

    assert (queued, more) == (1, False)
    assert session.get(Upload, kept).state == UploadState.QUEUED  # type: ignore[union-attr]
    assert session.get(Upload, gone).state == UploadState.FAILED  # type: ignore[union-attr]


def test_an_upload_back_from_a_lost_lease_after_the_cancel_is_cancelled_by_the_progress_pass(session: Session, connection_id: int, intake_policy: IntakePolicy, events: ListPublisher, clock: Clock) -> None:
    start(session, events, clock)
    chunk(session, intake_policy, events, clock, 0, range(2))
    session.execute(update(Upload).where(Upload.request_id == "bf-1:0:0").values(state=UploadState.SENDING, lease_token="t", lease_until=clock()))
    cancel_backfill(session, "bf-1", events=events, now=clock())
    session.execute(update(Upload).where(Upload.request_id == "bf-1:0:0").values(state=UploadState.QUEUED, lease_token=None, lease_until=None))
    session.commit()
    events.events.clear()

    publish_progress(session, events=events, now=clock(), interval=5)

    assert states(session) == {UploadState.CANCELLED: 2}
    assert [e["type"] for e in events.events] == ["upload.finished", "backfill.finished"]
    assert events.events[-1]["state"] == "cancelled"
    assert session.get(Backfill, "bf-1").finished_at is not None  # type: ignore[union-attr]


def test_redrive_of_job_not_published_goes_to_the_project_s_new_job(session: Session, connection_id: int, intake_policy: IntakePolicy, clock: Clock) -> None:
    # given: rejected for the old job; the same email was since submitted to that old job by another upload
    rejected = make_upload(session, intake_policy, clock(), "r-old", email="moved@example.org")
    other = make_upload(session, intake_policy, clock(), "r-other", email="moved@example.org")
    session.execute(update(Upload).where(Upload.id == rejected).values(
        state=UploadState.REJECTED, finished_at=clock(), job_position_id=JOB, reason_code="personio-sync.job-not-published"))
    session.execute(update(Upload).where(Upload.id == other).values(state=UploadState.SUBMITTED, finished_at=clock(), job_position_id=JOB))
    session.add(ApplicationClaim(connection_id=connection_id, job_position_id=JOB, email_normalized="moved@example.org", upload_id=other))
    # and: the project now points at a new job
    from models import ProjectLink

    session.execute(update(ProjectLink).where(ProjectLink.project_id == PROJECT).values(job_position_id=JOB + 1))
    session.commit()

    _, queued, _ = redrive_uploads(session, RedriveFilter(ACCOUNT, UploadState.REJECTED, reason_code="personio-sync.job-not-published"), now=clock())

    # then: queued for the new job (the application to the old one does not count against it)
    assert queued == 1
    assert session.get(Upload, rejected).state == UploadState.QUEUED  # type: ignore[union-attr]
