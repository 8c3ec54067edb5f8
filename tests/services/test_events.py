"""The event outbox: events commit with their state change and reach the stream at least once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models import Connection, Health, OutboxEvent, Upload, UploadState
from services.connections import set_health
from services.events import (
    ListPublisher,
    OutboxPublisher,
    check_event,
    relay_lock_key,
    relay_outbox,
    stream_fields,
)
from services.schemas import IntakePolicy
from services.uploads import receive_upload
from tests.concurrency import run_at_once
from tests.conftest import Clock
from tests.factories import make_connection

pytestmark = pytest.mark.rolled_back

STREAM = "test:events"


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def client(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server, decode_responses=True)


@pytest.fixture
def relay_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """The relay's own session, as the runtime opens it."""
    with session_factory() as session:
        yield session


def request(request_id: str, account_id: str = "acct-nowhere") -> dict[str, Any]:
    return {
        "request_id": request_id,
        "account_id": account_id,
        "project_id": "proj-1",
        "candidate": {"first_name": "Alex", "last_name": "Private", "email": "alex.private@example.org", "documents": []},
    }


def outbox(session_factory: sessionmaker[Session]) -> list[OutboxEvent]:
    with session_factory() as reader:
        return list(reader.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def stream(client: fakeredis.FakeRedis) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(STREAM)]


def publish_many(session: Session, count: int, clock: Clock) -> list[str]:
    publisher = OutboxPublisher(session)
    for index in range(count):
        publisher.publish({"type": "upload.finished", "request_id": f"req-{index}", "outcome": "submitted", "at": clock().isoformat()})
    session.commit()
    order = [row.payload["request_id"] for row in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    session.commit()  # SQLite: even a read holds the write lock until its transaction ends
    return order


# ------------------------------------------------------------ committed together


def test_outcome_event_is_committed_with_the_upload(
    session: Session, session_factory: sessionmaker[Session], intake_policy: IntakePolicy, clock: Clock
) -> None:
    # when: a request for an account without a connection ends at once (rejected)
    received = receive_upload(session, request("req-1"), policy=intake_policy, events=OutboxPublisher(session), now=clock())
    session.commit()  # the caller commits (see services)

    # then: a fresh session sees the outcome and its event, committed together
    assert received.state == UploadState.REJECTED
    [row] = outbox(session_factory)
    assert row.type == "upload.finished"
    assert str(uuid.UUID(row.event_id)) == row.event_id
    assert row.payload["request_id"] == "req-1"
    assert row.payload["outcome"] == "rejected"
    assert row.payload["reason_code"] == "personio-sync.connection-not-found"
    assert row.attempts == 0
    # and: no candidate data in it
    text = str(row.payload)
    for secret in ("alex.private@example.org", "Alex", "Private"):
        assert secret not in text


def test_invalid_request_without_request_id_is_committed_as_an_event(
    session: Session, session_factory: sessionmaker[Session], intake_policy: IntakePolicy, clock: Clock
) -> None:
    receive_upload(session, {"candidate": "nonsense"}, policy=intake_policy, events=OutboxPublisher(session), now=clock())
    session.commit()  # the caller commits (see services)

    [row] = outbox(session_factory)
    assert (row.type, row.payload["outcome"], row.payload["reason_code"]) == ("upload.invalid", "rejected", "personio-sync.invalid-request")
    assert row.payload["errors"]


def test_event_rolls_back_with_its_state_change(session: Session, session_factory: sessionmaker[Session], clock: Clock) -> None:
    # given: a health change published into the session, then the transaction fails
    connection = make_connection(session, company_id=1, access_token_encrypted="x", jobs_domain="a.jobs.personio.de", at=clock())
    connection.health = Health.INVALID_CREDENTIALS
    OutboxPublisher(session).publish({"type": "connection.health", "account_id": "acct-1", "health": "invalid_credentials", "at": clock().isoformat()})

    # when
    session.rollback()

    # then: neither the change nor its event exists
    assert outbox(session_factory) == []
    with session_factory() as reader:
        assert reader.scalars(select(Connection.health)).one() == Health.HEALTHY


def test_duplicate_delivery_race_leaves_only_the_winners_event(
    session: Session, session_factory: sessionmaker[Session], intake_policy: IntakePolicy, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: another worker records the same request_id between our check and our insert
    receive_upload(session, request("req-1"), policy=intake_policy, events=OutboxPublisher(session), now=clock())
    session.commit()  # the caller commits (see services)
    from services import uploads

    real_scalar = Session.scalar
    calls = {"n": 0}

    def not_there_yet(self: Session, statement: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return None if calls["n"] == 1 else real_scalar(self, statement, *args, **kwargs)

    with session_factory.begin() as loser:
        monkeypatch.setattr(Session, "scalar", not_there_yet)
        received = uploads.receive_upload(loser, request("req-1"), policy=intake_policy, events=OutboxPublisher(loser), now=clock())
        monkeypatch.undo()

    # then: the loser's event went with its rolled-back insert
    assert received.created is False
    assert [row.payload["request_id"] for row in outbox(session_factory)] == ["req-1"]
    with session_factory() as reader:
        assert reader.scalar(select(func.count()).select_from(Upload)) == 1


def test_health_event_is_committed_with_the_health_change(session: Session, session_factory: sessionmaker[Session], clock: Clock) -> None:
    connection = make_connection(session, company_id=1, access_token_encrypted="x", jobs_domain="a.jobs.personio.de", at=clock())

    assert set_health(session, connection, Health.FEED_DISABLED, "feed.html", now=clock(), events=OutboxPublisher(session))
    session.commit()  # the caller commits (see services)

    [row] = outbox(session_factory)
    assert row.type == "connection.health"
    assert (row.payload["health"], row.payload["previous"], row.payload["reason_code"]) == ("feed_disabled", "healthy", "feed.html")
    assert row.payload["message_en"] and row.payload["message_de"]


# -------------------------------------------------------------- only allowed fields


@pytest.mark.parametrize("publisher", [ListPublisher, None])
def test_an_event_with_submitted_values_is_refused(session: Session, publisher: type[ListPublisher] | None) -> None:
    target = publisher() if publisher is not None else OutboxPublisher(session)
    with pytest.raises(ValueError, match="email"):
        target.publish({"type": "upload.finished", "request_id": "r", "email": "alex@example.org"})
    with pytest.raises(ValueError, match="type"):
        check_event({"request_id": "r"})
    assert not session.new


# ------------------------------------------------------------------------ relay


def test_relay_sends_in_order_with_event_ids_and_deletes(
    session: Session, session_factory: sessionmaker[Session], relay_session: Session, client: fakeredis.FakeRedis, clock: Clock
) -> None:
    # given
    order = publish_many(session, 5, clock)
    ids = [row.event_id for row in outbox(session_factory)]

    # when
    sent = relay_outbox(relay_session, client, STREAM, maxlen=1000, batch=2)

    # then: every event once, in id order, with its event_id; the outbox is empty
    assert sent == 5
    entries = stream(client)
    assert [e["request_id"] for e in entries] == order == [f"req-{i}" for i in range(5)]
    assert [e["event_id"] for e in entries] == ids
    assert entries[0] == {"event_id": ids[0], "type": "upload.finished", "request_id": "req-0", "outcome": "submitted", "at": clock().isoformat()}
    assert outbox(session_factory) == []
    assert client.get(relay_lock_key(STREAM)) is None
    # and: nothing left, nothing sent again
    assert relay_outbox(relay_session, client, STREAM) == 0
    assert len(stream(client)) == 5


def test_stream_fields_are_flat_strings() -> None:
    fields = stream_fields("e-1", {"type": "upload.invalid", "errors": ["a: missing"], "resumed_uploads": 2, "field": None, "ok": True})
    assert fields == {"event_id": "e-1", "type": "upload.invalid", "errors": '["a: missing"]', "resumed_uploads": "2", "ok": "true"}


def test_redis_down_keeps_the_events_and_a_later_relay_sends_them(
    session: Session, session_factory: sessionmaker[Session], relay_session: Session, server: fakeredis.FakeServer, client: fakeredis.FakeRedis, clock: Clock
) -> None:
    # given: Redis is down when the outcomes are committed
    publish_many(session, 3, clock)
    server.connected = False

    # when: the relay runs, without raising
    assert relay_outbox(relay_session, client, STREAM) == 0

    # then: the events wait in the outbox
    assert len(outbox(session_factory)) == 3

    # when: Redis is back
    server.connected = True
    assert relay_outbox(relay_session, client, STREAM) == 3

    # then
    assert [e["request_id"] for e in stream(client)] == ["req-0", "req-1", "req-2"]
    assert outbox(session_factory) == []


def test_a_refused_xadd_keeps_the_events_and_counts_the_attempt(
    session: Session, session_factory: sessionmaker[Session], relay_session: Session, client: fakeredis.FakeRedis, clock: Clock
) -> None:
    publish_many(session, 2, clock)
    client.set(STREAM, "not a stream")  # XADD answers WRONGTYPE

    assert relay_outbox(relay_session, client, STREAM) == 0

    assert [row.attempts for row in outbox(session_factory)] == [1, 1]
    client.delete(STREAM)
    assert relay_outbox(relay_session, client, STREAM) == 2
    assert outbox(session_factory) == []


def test_a_relay_killed_after_xadd_sends_again_with_the_same_event_ids(
    session: Session, session_factory: sessionmaker[Session], relay_session: Session, client: fakeredis.FakeRedis, clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: the relay dies between XADD and deleting the rows
    publish_many(session, 2, clock)
    import services.events

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt("worker killed")

    monkeypatch.setattr(services.events, "delete", killed)
    with pytest.raises(KeyboardInterrupt):
        relay_outbox(relay_session, client, STREAM)
    monkeypatch.undo()
    relay_session.rollback()

    # when: the next relay runs
    assert relay_outbox(relay_session, client, STREAM) == 2

    # then: each event twice, with the same event_id: consumers drop the second copy
    ids = [e["event_id"] for e in stream(client)]
    assert len(ids) == 4
    assert ids[:2] == ids[2:]
    assert outbox(session_factory) == []


def test_a_relay_finding_another_one_running_skips(
    session: Session, session_factory: sessionmaker[Session], relay_session: Session, client: fakeredis.FakeRedis, clock: Clock
) -> None:
    publish_many(session, 2, clock)
    client.lock(relay_lock_key(STREAM), timeout=30).acquire()

    assert relay_outbox(relay_session, client, STREAM) == 0

    assert stream(client) == []
    assert len(outbox(session_factory)) == 2


def test_relays_running_at_once_send_each_event_once(
    session: Session, session_factory: sessionmaker[Session], server: fakeredis.FakeServer, clock: Clock
) -> None:
    # given: a backlog, and four relays (after-commit ones and beat's) starting together
    publish_many(session, 120, clock)
    session.close()

    def relay() -> None:
        client = fakeredis.FakeRedis(server=server, decode_responses=True)
        with session_factory() as own:
            for _ in range(200):
                relay_outbox(own, client, STREAM, batch=5)
                if own.scalar(select(func.count()).select_from(OutboxEvent)) == 0:
                    own.commit()
                    return
                own.commit()

    errors = run_at_once(relay, 4)

    # then: every event exactly once, in order
    assert errors == []
    entries = stream(fakeredis.FakeRedis(server=server, decode_responses=True))
    assert Counter(e["event_id"] for e in entries).most_common(1)[0][1] == 1
    assert [e["request_id"] for e in entries] == [f"req-{i}" for i in range(120)]
    assert outbox(session_factory) == []
