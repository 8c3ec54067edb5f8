"""services.secrets and services.rotation: access tokens at rest, and key rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config import load_settings
from models import Connection
from services.rotation import rotate_tokens
from services.secrets import GENERATED_KEY_FILE, SecretKeyError, TokenCipher, load_cipher
from tests.factories import make_connection

pytestmark = pytest.mark.rolled_back

TOKEN = "recruiting-token-0123456789"


def new_key() -> str:
    return Fernet.generate_key().decode()


def add_connection(session: Session, account_id: str, encrypted: str) -> None:
    make_connection(session, account_id=account_id, access_token_encrypted=encrypted)


def stored_tokens(session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_factory() as session:
        return {c.account_id: c.access_token_encrypted for c in session.scalars(select(Connection))}


# ---------------------------------------------------------------- cipher


def test_encrypt_then_decrypt(cipher: TokenCipher) -> None:
    stored = cipher.encrypt(TOKEN)

    assert TOKEN not in stored
    assert cipher.decrypt(stored) == TOKEN
    assert cipher.encrypt(TOKEN) != stored  # a fresh IV every time


def test_a_cipher_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        TokenCipher(())


def test_unknown_key_gives_the_fix_not_the_token() -> None:
    stored = TokenCipher((new_key(),)).encrypt(TOKEN)

    with pytest.raises(SecretKeyError) as caught:
        TokenCipher((new_key(),)).decrypt(stored)

    message = str(caught.value)
    assert "PERSONIO_SYNC_SECRET_KEYS" in message
    assert "keep the old key in the list (after the new one)" in message
    assert "personio-sync rotate-keys" in message
    assert TOKEN not in message and stored not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_tampered_token_is_refused() -> None:
    cipher = TokenCipher((new_key(),))
    stored = cipher.encrypt(TOKEN)

    with pytest.raises(SecretKeyError):
        cipher.decrypt(stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB"))


def test_newest_key_encrypts_any_key_decrypts() -> None:
    old, new = new_key(), new_key()
    before = TokenCipher((old,)).encrypt(TOKEN)
    both = TokenCipher((new, old))

    assert both.decrypt(before) == TOKEN
    assert not both.is_current(before)
    after = both.encrypt(TOKEN)
    assert both.is_current(after)
    assert TokenCipher((new,)).decrypt(after) == TOKEN


# --------------------------------------------------------------- rotation


def test_rotation_with_two_keys(session: Session, session_factory: sessionmaker[Session]) -> None:
    # given: two tokens stored under the old key, one already under the new one
    old, new = new_key(), new_key()
    add_connection(session, "a", TokenCipher((old,)).encrypt("token-a"))
    add_connection(session, "b", TokenCipher((old,)).encrypt("token-b"))
    add_connection(session, "c", TokenCipher((new,)).encrypt("token-c"))
    rotating = TokenCipher((new, old))

    # when
    result = rotate_tokens(session, rotating)
    session.commit()  # the caller commits (see services)

    # then: the old key can go
    assert result == {"rotated": 2, "already_current": 1}
    only_new = TokenCipher((new,))
    assert {account: only_new.decrypt(value) for account, value in stored_tokens(session_factory).items()} == {"a": "token-a", "b": "token-b", "c": "token-c"}
    assert rotate_tokens(session, rotating) == {"rotated": 0, "already_current": 3}
    session.commit()


def test_rotation_without_the_old_key_fails_with_the_fix_and_changes_nothing(session: Session, session_factory: sessionmaker[Session]) -> None:
    # given: the operator dropped the old key before rotating
    old, new = new_key(), new_key()
    add_connection(session, "a", TokenCipher((new,)).encrypt("token-a"))
    add_connection(session, "b", TokenCipher((old,)).encrypt("token-b"))
    before = stored_tokens(session_factory)

    # when
    with pytest.raises(SecretKeyError) as caught:
        rotate_tokens(session, TokenCipher((new_key(), new)))
    session.rollback()

    # then
    assert "put the old key back" in str(caught.value)
    assert "rotate-keys" in str(caught.value)
    assert stored_tokens(session_factory) == before


def test_rotation_of_an_empty_table(session: Session) -> None:
    assert rotate_tokens(session, TokenCipher((new_key(),))) == {"rotated": 0, "already_current": 0}


# ---------------------------------------------------------- generated key


def test_generated_key_file_is_private_and_reused(tmp_path: Path) -> None:
    settings = load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path / "data")})

    # when: no keys configured
    first = load_cipher(settings)

    # then: a key was generated, readable by the owner only
    key_file = tmp_path / "data" / GENERATED_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == 44
    # and: the next process uses the same key
    stored = first.encrypt(TOKEN)
    assert load_cipher(settings).decrypt(stored) == TOKEN
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_configured_keys_win_and_no_file_is_written(tmp_path: Path) -> None:
    key = new_key()
    settings = load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path), "PERSONIO_SYNC_SECRET_KEYS": key})

    cipher = load_cipher(settings)

    assert TokenCipher((key,)).decrypt(cipher.encrypt(TOKEN)) == TOKEN
    assert not (tmp_path / GENERATED_KEY_FILE).exists()


def test_existing_key_file_is_read(tmp_path: Path) -> None:
    key = new_key()
    (tmp_path / GENERATED_KEY_FILE).write_text(key + "\n")

    cipher = load_cipher(load_settings({"PERSONIO_SYNC_DATA_DIR": str(tmp_path)}))

    assert TokenCipher((key,)).decrypt(cipher.encrypt(TOKEN)) == TOKEN
