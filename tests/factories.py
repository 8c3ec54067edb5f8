"""Test data factories: the one place that knows how to build a connection, a link, an upload.

Defaults are the stand-in's demo company (``sandbox/data/demo.json``): company 1000, its
token and jobs domain, account ``acct-1`` and project ``proj-1`` linked to job 1000001.
Every factory writes through the session it is given and commits (``commit=False``
only flushes), because the services under test read with sessions of their own.
Uploads are recorded the way production records them, through ``receive_upload``,
so their documents and history rows are the real ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models import Connection, Health, ProjectLink, UploadState
from services.events import EventPublisher, ListPublisher
from services.schemas import IntakePolicy
from services.secrets import TokenCipher
from services.uploads import receive_upload

ACCOUNT = "acct-1"
PROJECT = "proj-1"
COMPANY = 1000
TOKEN = "demo-token-please-change"
DOMAIN = "demo.jobs.personio.de"
JOB = 1000001


def _save(session: Session, row: Any, commit: bool) -> None:
    session.add(row)
    if commit:
        session.commit()
    else:
        session.flush()


def make_connection(
    session: Session,
    cipher: TokenCipher | None = None,
    *,
    account_id: str = ACCOUNT,
    company_id: int = COMPANY,
    token: str = TOKEN,
    jobs_domain: str = DOMAIN,
    feed_language: str = "de",
    health: Health = Health.HEALTHY,
    at: datetime | None = None,
    commit: bool = True,
    **fields: Any,
) -> Connection:
    """A stored connection; the token is encrypted with ``cipher`` unless
    ``access_token_encrypted`` is given. ``at`` sets created_at and updated_at."""
    if "access_token_encrypted" not in fields:
        if cipher is None:
            raise TypeError("make_connection needs a cipher or access_token_encrypted")
        fields["access_token_encrypted"] = cipher.encrypt(token)
    if at is not None:
        fields.setdefault("created_at", at)
        fields.setdefault("updated_at", at)
    connection = Connection(
        account_id=account_id,
        company_id=company_id,
        jobs_domain=jobs_domain,
        feed_language=feed_language,
        health=health,
        **fields,
    )
    _save(session, connection, commit)
    return connection


def make_link(
    session: Session,
    connection: Connection,
    *,
    project_id: str = PROJECT,
    job_position_id: int = JOB,
    at: datetime | None = None,
    commit: bool = True,
    **fields: Any,
) -> ProjectLink:
    """A project of ``connection``'s account linked to one of its jobs."""
    if at is not None:
        fields.setdefault("created_at", at)
        fields.setdefault("updated_at", at)
    link = ProjectLink(connection_id=connection.id, project_id=project_id, job_position_id=job_position_id, **fields)
    _save(session, link, commit)
    return link


def upload_request(
    request_id: str = "req-1",
    *,
    account_id: str = ACCOUNT,
    project_id: str = PROJECT,
    priority: str | None = None,
    phase: Any = None,
    external_posting_id: Any = None,
    **candidate: Any,
) -> dict[str, Any]:
    """An upload request as the API receives it; ``candidate`` overrides the candidate's fields.

    ``phase`` and ``external_posting_id`` are the request's own (top-level) fields, sent when given.
    """
    body: dict[str, Any] = {"first_name": "Alex", "last_name": "Example", "email": "alex@example.org"}
    body.update(candidate)
    payload: dict[str, Any] = {"request_id": request_id, "account_id": account_id, "project_id": project_id, "candidate": body}
    if priority is not None:
        payload["priority"] = priority
    if phase is not None:
        payload["phase"] = phase
    if external_posting_id is not None:
        payload["external_posting_id"] = external_posting_id
    return payload


def make_upload(
    session: Session,
    policy: IntakePolicy,
    now: datetime,
    request_id: str = "req-1",
    *,
    events: EventPublisher | None = None,
    expect: UploadState | None = UploadState.QUEUED,
    **request: Any,
) -> int:
    """Record an upload through ``receive_upload`` and return its id (``request`` as for
    :func:`upload_request`). It must come out in state ``expect`` (None: any state)."""
    received = receive_upload(
        session, upload_request(request_id, **request), policy=policy, events=events or ListPublisher(), now=now
    )
    assert received.upload_id is not None, received
    if expect is not None:
        assert received.state == expect, received
    return received.upload_id
