"""Re-encrypting stored access tokens under the newest key (``personio-sync rotate-keys``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Connection
from services.secrets import TokenCipher


def rotate_tokens(session: Session, cipher: TokenCipher) -> dict[str, int]:
    rotated = current = 0
    for connection in session.scalars(select(Connection)):
        if cipher.is_current(connection.access_token_encrypted):
            current += 1
            continue
        connection.access_token_encrypted = cipher.rotate(connection.access_token_encrypted)
        rotated += 1
    session.flush()  # the caller commits (see services)
    return {"rotated": rotated, "already_current": current}
