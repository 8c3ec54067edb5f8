"""services.dispatch: what is claimed now, by whom, and what comes back after a crash."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models import Connection, Priority, Upload, UploadState
from ratelimit import CompanyRateLimiter
from services.backfill import record_backfill
from services.context import UploadPolicy
from services.dispatch import (
    DispatchResult,
    dispatch_connection,
    due_connections,
    reclaim_expired_leases,
)
from services.events import ListPublisher
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from services.uploads import receive_upload
from tests.concurrency import run_at_once
from tests.factories import make_connection

pytestmark = pytest.mark.rolled_back

if TYPE_CHECKING:
    from tests.conftest import Clock


def add_connection(session: Session, cipher: TokenCipher, account_id: str = "acct-1", company_id: int = 1000) -> int:
    return make_connection(session, cipher, account_id=account_id, company_id=company_id, token="token").id


def candidate(n: int) -> dict[str, Any]:
    return {"first_name": "Cand", "last_name": f"No{n}", "email": f"c{n}@example.org"}


def record(session: Session, policy: IntakePolicy, clock: Clock, request_id: str, *, account_id: str = "acct-1", priority: str = "interactive") -> int:
    payload = {"request_id": request_id, "account_id": account_id, "project_id": "proj-1", "priority": priority, "candidate": candidate(hash(request_id) % 1000)}
    received = receive_upload(session, payload, policy=policy, events=ListPublisher(), now=clock())
    session.commit()  # as the intake task does (see services)
    assert received.upload_id is not None
    return received.upload_id


def dispatch(session_factory: sessionmaker[Session], connection_id: int, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> DispatchResult:
    with session_factory.begin() as session:
        return dispatch_connection(session, connection_id, policy=policy, limiter=limiter, now=clock())


def state_of(session_factory: sessionmaker[Session], upload_id: int) -> Upload:
    with session_factory() as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None
        session.expunge(upload)
        return upload


@pytest.fixture
def connection_id(session: Session, cipher: TokenCipher) -> int:
    connection_id = add_connection(session, cipher)
    session.commit()
    return connection_id


@pytest.fixture
def policy(upload_policy: UploadPolicy) -> UploadPolicy:
    return upload_policy  # company_concurrency 2, lease 30 s


# ------------------------------------------------------------------ claiming


def test_claim_sets_the_lease(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    upload_id = record(session, intake_policy, clock, "r1")
    session.commit()

    result = dispatch(session_factory, connection_id, policy, limiter, clock)

    [claimed] = result.claimed
    assert result.wake_in is None
    assert (claimed.upload_id, claimed.priority, claimed.connection_id) == (upload_id, Priority.INTERACTIVE, connection_id)
    upload = state_of(session_factory, upload_id)
    assert upload.state == UploadState.SENDING
    assert upload.lease_token == claimed.lease_token
    assert upload.lease_until == clock() + timedelta(seconds=policy.lease)
    # Dispatch only peeks at the budget; the step takes the slots it uses.
    assert limiter.usage("1000") == 0


def test_interactive_uploads_go_before_backfill(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock, events: ListPublisher) -> None:
    # given: a backfill recorded first, a recruiter click after it
    touched = record_backfill(
        session,
        {"backfill_id": "bf-1", "account_id": "acct-1", "project_id": "proj-1", "candidates": [candidate(i) for i in range(5)]},
        policy=intake_policy,
        events=events,
        now=clock(),
    )
    assert touched == {connection_id}
    clock.advance(1)
    click = record(session, intake_policy, clock, "click-1")
    clock.advance(1)
    session.commit()

    # when: two slots
    first = dispatch(session_factory, connection_id, policy, limiter, clock)

    # then: the click, then the oldest backfill upload
    assert [c.priority for c in first.claimed] == [Priority.INTERACTIVE, Priority.BACKFILL]
    assert first.claimed[0].upload_id == click
    assert state_of(session_factory, first.claimed[1].upload_id).request_id == "bf-1:0"

    # and: backfill keeps flowing once no click waits
    second = dispatch(session_factory, connection_id, replace_cap(policy, 4), limiter, clock)
    assert [c.priority for c in second.claimed] == [Priority.BACKFILL] * 2


def test_backfill_recorded_twice_records_nothing_new(session: Session, connection_id: int, intake_policy: IntakePolicy, clock: Clock, events: ListPublisher) -> None:
    backfill = {"backfill_id": "bf-9", "account_id": "acct-1", "project_id": "proj-1", "candidates": [candidate(1), {"request_id": "own-id", "candidate": candidate(2)}]}

    assert record_backfill(session, backfill, policy=intake_policy, events=events, now=clock()) == {connection_id}
    assert record_backfill(session, backfill, policy=intake_policy, events=events, now=clock()) == set()

    assert sorted(session.scalars(select(Upload.request_id)).all()) == ["bf-9:0", "own-id"]
    assert set(session.scalars(select(Upload.backfill_id)).all()) == {"bf-9"}
    assert set(session.scalars(select(Upload.priority)).all()) == {Priority.BACKFILL}


def test_older_due_uploads_go_first_within_a_priority(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    late = record(session, intake_policy, clock, "late")
    early = record(session, intake_policy, clock, "early")
    same = record(session, intake_policy, clock, "same")
    session.execute(update(Upload).where(Upload.id == early).values(next_attempt_at=clock() - timedelta(seconds=10)))
    session.commit()

    result = dispatch(session_factory, connection_id, replace_cap(policy, 3), limiter, clock)

    assert [c.upload_id for c in result.claimed] == [early, late, same]


def replace_cap(policy: UploadPolicy, cap: int) -> UploadPolicy:
    return replace(policy, company_concurrency=cap)


def test_only_due_queued_uploads_of_this_connection_are_claimed(session: Session, session_factory: sessionmaker[Session], cipher: TokenCipher, connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    # given: one due, one parked for later, one held, one finished, one of another connection
    add_connection(session, cipher, account_id="acct-2", company_id=2000)
    due = record(session, intake_policy, clock, "due")
    later = record(session, intake_policy, clock, "later")
    held = record(session, intake_policy, clock, "held")
    done = record(session, intake_policy, clock, "done")
    record(session, intake_policy, clock, "other", account_id="acct-2")
    session.execute(update(Upload).where(Upload.id == later).values(next_attempt_at=clock() + timedelta(seconds=1)))
    session.execute(update(Upload).where(Upload.id == held).values(state=UploadState.HELD))
    session.execute(update(Upload).where(Upload.id == done).values(state=UploadState.SUBMITTED))
    session.commit()

    result = dispatch(session_factory, connection_id, replace_cap(policy, 10), limiter, clock)

    assert [c.upload_id for c in result.claimed] == [due]


def test_unknown_connection_claims_nothing(session_factory: sessionmaker[Session], policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    assert dispatch(session_factory, 424242, policy, limiter, clock) == DispatchResult([], None)


# ---------------------------------------------------------- in-flight cap


def test_in_flight_cap_per_connection(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    # given: three uploads, cap two
    ids = [record(session, intake_policy, clock, f"r{i}") for i in range(3)]
    session.commit()

    # when
    first = dispatch(session_factory, connection_id, policy, limiter, clock)
    second = dispatch(session_factory, connection_id, policy, limiter, clock)

    # then: two in flight; the second dispatch waits for a finishing step (no timer)
    assert [c.upload_id for c in first.claimed] == ids[:2]
    assert second == DispatchResult([], None)

    # when: one of them finishes
    with session_factory() as worker:
        worker.execute(update(Upload).where(Upload.id == ids[0]).values(state=UploadState.SUBMITTED, lease_token=None))
        worker.commit()
    third = dispatch(session_factory, connection_id, policy, limiter, clock)

    # then
    assert [c.upload_id for c in third.claimed] == [ids[2]]


def test_expired_leases_do_not_count_as_in_flight(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    ids = [record(session, intake_policy, clock, f"r{i}") for i in range(3)]
    session.commit()
    dispatch(session_factory, connection_id, policy, limiter, clock)

    clock.advance(policy.lease + 1)
    result = dispatch(session_factory, connection_id, policy, limiter, clock)

    assert [c.upload_id for c in result.claimed] == [ids[2]]


# ------------------------------------------------------------------ budget


def test_spent_budget_stops_dispatch_and_says_when_to_come_back(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    upload_id = record(session, intake_policy, clock, "r1")
    session.commit()
    for _ in range(20):
        limiter.try_acquire("1000")
    clock.advance(0.5)

    result = dispatch(session_factory, connection_id, policy, limiter, clock)

    assert result.claimed == []
    assert result.wake_in == pytest.approx(1.5)
    assert state_of(session_factory, upload_id).state == UploadState.QUEUED

    clock.advance(1.5)
    assert [c.upload_id for c in dispatch(session_factory, connection_id, policy, limiter, clock).claimed] == [upload_id]


def test_lockout_stops_dispatch_for_its_length(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    record(session, intake_policy, clock, "r1")
    session.commit()
    limiter.lock_out("1000", 7.0)

    result = dispatch(session_factory, connection_id, policy, limiter, clock)

    assert result == DispatchResult([], pytest.approx(7.0))


def test_claims_no_more_than_the_budget_left(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    for i in range(4):
        record(session, intake_policy, clock, f"r{i}")
    session.commit()
    for _ in range(19):
        limiter.try_acquire("1000")

    result = dispatch(session_factory, connection_id, replace_cap(policy, 10), limiter, clock)

    # One request left: claiming more would only park them again; look again after one slot's time.
    assert len(result.claimed) == 1
    assert result.wake_in == pytest.approx(1 / policy.budget_per_second)


def test_other_companies_budget_does_not_matter(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    record(session, intake_policy, clock, "r1")
    session.commit()
    limiter.lock_out("2000", 60)

    assert len(dispatch(session_factory, connection_id, policy, limiter, clock).claimed) == 1


# ------------------------------------------------------------------ races


def test_a_second_dispatcher_cannot_claim_a_claimed_upload(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    upload_id = record(session, intake_policy, clock, "r1")
    session.commit()
    wide = replace_cap(policy, 10)

    first = dispatch(session_factory, connection_id, wide, limiter, clock)
    second = dispatch(session_factory, connection_id, wide, limiter, clock)

    assert [c.upload_id for c in first.claimed] == [upload_id]
    assert second.claimed == []
    assert state_of(session_factory, upload_id).lease_token == first.claimed[0].lease_token


def test_concurrent_dispatchers_claim_disjoint_uploads(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    # given: 15 uploads and four dispatchers racing with room for all of them
    ids = {record(session, intake_policy, clock, f"r{i}") for i in range(15)}
    session.commit()
    wide = replace_cap(policy, 50)
    results: list[DispatchResult] = []

    # when
    errors = run_at_once(lambda: results.append(dispatch(session_factory, connection_id, wide, limiter, clock)), 4)

    # then: every upload claimed exactly once, with the lease stored being the winner's
    assert errors == []
    claimed = [c for result in results for c in result.claimed]
    assert sorted(c.upload_id for c in claimed) == sorted(ids)
    with session_factory() as check:
        stored = dict(check.execute(select(Upload.id, Upload.lease_token)).all())  # type: ignore[arg-type]
    assert all(stored[c.upload_id] == c.lease_token for c in claimed)


# --------------------------------------------------------------- reconciler


def test_reclaim_requeues_expired_leases_only(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    # given: one claimed long ago (its worker died), one claimed just now, one queued
    crashed = record(session, intake_policy, clock, "crashed")
    session.commit()
    dispatch(session_factory, connection_id, replace_cap(policy, 1), limiter, clock)
    clock.advance(policy.lease + 1)
    live = record(session, intake_policy, clock, "live")
    waiting = record(session, intake_policy, clock, "waiting")
    session.commit()
    [live_claim] = dispatch(session_factory, connection_id, replace_cap(policy, 1), limiter, clock).claimed
    assert live_claim.upload_id == live

    # when
    with session_factory.begin() as reconciler:
        count = reclaim_expired_leases(reconciler, clock())

    # then
    assert count == 1
    requeued = state_of(session_factory, crashed)
    assert requeued.state == UploadState.QUEUED
    assert requeued.lease_token is None and requeued.lease_until is None
    assert requeued.next_attempt_at == clock()
    with session_factory() as check:
        upload = check.get(Upload, crashed)
        assert upload is not None
        assert [(e.state, e.reason_code) for e in upload.events][-1] == ("queued", "lease expired; sending again")
    assert state_of(session_factory, live).lease_token == live_claim.lease_token
    assert state_of(session_factory, waiting).state == UploadState.QUEUED
    with session_factory.begin() as reconciler:
        assert reclaim_expired_leases(reconciler, clock()) == 0


def test_lease_exactly_at_expiry_is_not_reclaimed(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    record(session, intake_policy, clock, "r1")
    session.commit()
    dispatch(session_factory, connection_id, policy, limiter, clock)
    clock.advance(policy.lease)

    with session_factory.begin() as reconciler:
        assert reclaim_expired_leases(reconciler, clock()) == 0


# --------------------------------------------------------------- due lists


def test_due_connections(session: Session, cipher: TokenCipher, connection_id: int, intake_policy: IntakePolicy, clock: Clock) -> None:
    # given: acct-1 due, acct-2 only later, acct-3 only held, plus an upload of no connection
    second = add_connection(session, cipher, "acct-2", 2000)
    third = add_connection(session, cipher, "acct-3", 3000)
    record(session, intake_policy, clock, "a")
    record(session, intake_policy, clock, "a2")
    later = record(session, intake_policy, clock, "b", account_id="acct-2")
    held = record(session, intake_policy, clock, "c", account_id="acct-3")
    record(session, intake_policy, clock, "orphan", account_id="acct-unknown")
    session.execute(update(Upload).where(Upload.id == later).values(next_attempt_at=clock() + timedelta(seconds=30)))
    session.execute(update(Upload).where(Upload.id == held).values(state=UploadState.HELD))
    session.commit()

    assert due_connections(session, clock()) == [connection_id]
    assert sorted(due_connections(session, clock() + timedelta(seconds=30))) == [connection_id, second]
    assert len(due_connections(session, clock(), limit=1)) == 1
    assert third not in due_connections(session, clock() + timedelta(days=1))


def test_claims_exactly_what_the_budget_still_allows(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    # given: the company has 3 of its 20 requests left in the window
    company = str(session.get(Connection, connection_id).company_id)  # type: ignore[union-attr]
    for _ in range(17):
        assert limiter.try_acquire(company).granted
    for n in range(5):
        record(session, intake_policy, clock, f"r{n}")

    # when: the in-flight cap would allow more
    result = dispatch(session_factory, connection_id, replace_cap(policy, 10), limiter, clock)

    # then: as many as the budget allows, no more, no fewer
    assert len(result.claimed) == 3


def test_due_connections_skips_companies_without_a_free_slot(session: Session, session_factory: sessionmaker[Session], connection_id: int, intake_policy: IntakePolicy, policy: UploadPolicy, limiter: CompanyRateLimiter, clock: Clock) -> None:
    for n in range(3):
        record(session, intake_policy, clock, f"busy{n}")
    assert due_connections(session, clock(), concurrency=2) == [connection_id]
    session.commit()

    dispatch(session_factory, connection_id, replace_cap(policy, 2), limiter, clock)  # both slots taken

    session.expire_all()
    assert due_connections(session, clock()) == [connection_id]  # still has due work...
    assert due_connections(session, clock(), concurrency=2) == []  # ...but no slot: the pump skips it
    assert due_connections(session, clock(), concurrency=3) == [connection_id]
