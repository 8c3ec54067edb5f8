"""Access tokens at rest: Fernet under PERSONIO_SYNC_SECRET_KEYS, newest key first.

``MultiFernet`` encrypts with the first key and decrypts with any, so keys rotate by
prepending a new key, running ``personio-sync rotate-keys``, then dropping the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config import Settings

GENERATED_KEY_FILE = "secret.key"


class SecretKeyError(RuntimeError):
    """No key can decrypt a stored token (a key was removed before rotating)."""


class TokenCipher:
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        self._fernets = [Fernet(k.encode()) for k in keys]
        self._multi = MultiFernet(self._fernets)
        self._keys = keys

    def derived_keys(self, purpose: str) -> tuple[bytes, ...]:
        """One key per configured key (newest first) for ``purpose``, never the Fernet key itself.

        Used to key the digests of purged email addresses (``services.retention``): a key that
        is still in the list keeps matching the digests made under it.
        """
        return tuple(
            hmac.new(base64.urlsafe_b64decode(key.encode()), purpose.encode(), hashlib.sha256).digest() for key in self._keys
        )

    def encrypt(self, token: str) -> str:
        return self._multi.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        try:
            return self._multi.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored access token cannot be decrypted with PERSONIO_SYNC_SECRET_KEYS: "
                "keep the old key in the list (after the new one) until `personio-sync rotate-keys` has run"
            ) from None

    def rotate(self, stored: str) -> str:
        try:
            return self._multi.rotate(stored.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored access token cannot be re-encrypted: none of PERSONIO_SYNC_SECRET_KEYS decrypts it; "
                "put the old key back in the list (after the new one) and run `personio-sync rotate-keys` again"
            ) from None

    def is_current(self, stored: str) -> bool:
        """Whether ``stored`` is already encrypted under the newest key."""
        try:
            self._fernets[0].decrypt(stored.encode())
            return True
        except InvalidToken:
            return False


def load_cipher(settings: Settings) -> TokenCipher:
    """The configured keys, or a key generated once into the data directory (embedded default)."""
    if settings.secret_keys:
        return TokenCipher(settings.secret_keys)
    path = settings.data_dir / GENERATED_KEY_FILE
    return TokenCipher((_read_or_create_key(path),))


def _read_or_create_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key().decode()
    # O_EXCL: if two processes start together, one creates the key and the other reads it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
