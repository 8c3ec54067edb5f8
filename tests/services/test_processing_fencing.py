"""A step owns its upload exclusively, and holds no database transaction while a remote host answers.

Uses the fixtures and helpers of test_processing (the stand-in over HTTP, a real database).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import requests
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from models import Connection, Upload, UploadState
from personio.client import PersonioClient
from sandbox import SandboxServer
from services.context import SyncDeps
from services.processing import StepOutcome, process_upload
from services.schemas import IntakePolicy
from tests.conftest import Clock
from tests.services.test_processing import (  # noqa: F401 - fixtures
    claim,
    connection,
    deps,
    fetcher,
    inline,
    load,
    record,
    refresher,
    wakes,
)


class _Watching(PersonioClient):
    """The real client, calling ``before`` ahead of every request it sends."""

    before: Callable[[str], None]

    def _request(self, path: str, **kwargs: Any) -> Any:  # type: ignore[override]
        self.before(path)
        return super()._request(path, **kwargs)


def _watched(deps: SyncDeps, before: Callable[[str], None]) -> SyncDeps:
    build = deps.clients

    def clients(connection: Connection) -> PersonioClient:
        client = build(connection)
        client.__class__ = _Watching
        client.before = before  # type: ignore[attr-defined]
        return client

    return replace(deps, clients=clients)


def test_no_transaction_is_open_while_personio_answers(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, sandbox: SandboxServer,
) -> None:
    upload_id = record(session, intake_policy, clock, documents=[inline(), inline("letter.pdf", b"%PDF-1.4 letter", "cover-letter")])
    seen: list[tuple[str, bool]] = []
    watched = _watched(deps, lambda path: seen.append((path, session.in_transaction())))
    lease = claim(session, session_factory, deps, connection.id)[upload_id]

    result = process_upload(session, watched, upload_id, lease)

    assert result.outcome == StepOutcome.FINISHED
    assert [path for path, _ in seen] == ["/v1/recruiting/applications/documents"] * 2 + ["/v1/recruiting/applications"]
    assert not any(open_ for _, open_ in seen), seen


def test_no_transaction_is_open_during_a_document_download(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock,
) -> None:
    allowed = replace(intake_policy, document_url_hosts=("files.example.com",))
    upload_id = record(session, allowed, clock, documents=[{"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com/cv.pdf"}])
    during: list[bool] = []

    def fetch(url: str) -> bytes:
        during.append(session.in_transaction())
        return b"%PDF-1.4 downloaded"

    lease = claim(session, session_factory, deps, connection.id)[upload_id]
    result = process_upload(session, replace(deps, fetch_document=fetch), upload_id, lease)

    assert result.outcome == StepOutcome.FINISHED
    assert during == [False]


def test_a_second_delivery_of_the_same_claim_does_nothing(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, sandbox: SandboxServer,
) -> None:
    """A redelivered message arrives while the first step is still waiting on Personio."""
    upload_id = record(session, intake_policy, clock)
    lease = claim(session, session_factory, deps, connection.id)[upload_id]
    second: list[Any] = []

    def run_the_duplicate(path: str) -> None:
        if not second:
            with session_factory() as other:
                second.append(process_upload(other, deps, upload_id, lease))

    result = process_upload(session, _watched(deps, run_the_duplicate), upload_id, lease)

    assert result.outcome == StepOutcome.FINISHED
    assert second[0].outcome == StepOutcome.STALE
    assert len(requests.get(f"{sandbox.url}/_sandbox/applications", timeout=5).json()) == 1
    assert len(requests.get(f"{sandbox.url}/_sandbox/documents", timeout=5).json()) == 1


def test_a_step_whose_lease_was_taken_back_stops_before_its_next_request(
    session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection: Connection,
    intake_policy: IntakePolicy, clock: Clock, sandbox: SandboxServer,
) -> None:
    """The reconciler re-queued the upload (lease expired) while its CV was uploading."""
    upload_id = record(session, intake_policy, clock)
    lease = claim(session, session_factory, deps, connection.id)[upload_id]
    sent: list[str] = []

    def reconciler_strikes(path: str) -> None:
        sent.append(path)
        if len(sent) == 1:
            with session_factory() as other:
                other.execute(update(Upload).where(Upload.id == upload_id).values(state=UploadState.QUEUED, lease_token=None, lease_until=None))
                other.commit()

    result = process_upload(session, _watched(deps, reconciler_strikes), upload_id, lease)

    assert result.outcome == StepOutcome.STALE
    assert sent == ["/v1/recruiting/applications/documents"]  # no application POST after losing the lease
    upload = load(session, upload_id)
    assert upload.state == UploadState.QUEUED  # the reconciler's state stands
    assert requests.get(f"{sandbox.url}/_sandbox/applications", timeout=5).json() == []
