"""Helpers shared by the tests that run upload steps against a Personio stand-in.

The sandbox (``test_processing``, ``test_rate_limit_storm``) or a replaying server
(``test_answer_replay``): each builds its ``SyncDeps`` with :func:`client_factory`.
"""

from __future__ import annotations

from collections.abc import Callable

import requests
from sqlalchemy.orm import Session, sessionmaker

from models import Connection, Upload
from personio.client import PersonioClient, PersonioCredentials
from services.context import SyncDeps
from services.dispatch import dispatch_connection
from services.secrets import TokenCipher


def client_factory(http: requests.Session, base_url: str, cipher: TokenCipher) -> Callable[[Connection], PersonioClient]:
    """``SyncDeps.clients`` for a Personio at ``base_url``, with each connection's own credentials."""

    def build(connection: Connection) -> PersonioClient:
        credentials = PersonioCredentials(connection.company_id, cipher.decrypt(connection.access_token_encrypted))
        return PersonioClient(http, base_url=base_url, credentials=credentials, app_id="PERSONIO_SYNC", timeout=(2.0, 5.0))

    return build


def claim(session: Session, session_factory: sessionmaker[Session], deps: SyncDeps, connection_id: int) -> dict[int, str]:
    """Run the dispatcher in its own session, as the dispatch task does; upload id -> lease."""
    session.commit()  # end our transaction: SQLite takes the write lock at BEGIN
    with session_factory.begin() as dispatcher:
        result = dispatch_connection(dispatcher, connection_id, policy=deps.policy, limiter=deps.limiter, now=deps.clock())
    session.expire_all()
    return {c.upload_id: c.lease_token for c in result.claimed}


def load(session: Session, upload_id: int) -> Upload:
    """The upload as committed now (what other sessions wrote included)."""
    session.expire_all()
    upload = session.get(Upload, upload_id)
    assert upload is not None
    return upload
