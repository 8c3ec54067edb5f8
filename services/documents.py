"""Downloading documents given by URL: allowed hosts only, https only, size-capped while streaming."""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from services.schemas import host_allowed

MAX_REDIRECTS = 3


class DocumentFetchError(Exception):
    """A document URL could not be downloaded; ``permanent`` says whether retrying can help.

    ``detail`` says why in English (logs, history), ``detail_de`` in German: both reach the
    recruiter's messages (``details``), so a German message never carries an English reason.
    """

    def __init__(self, code: str, detail: str, *, permanent: bool, detail_de: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.detail_de = detail if detail_de is None else detail_de
        self.permanent = permanent

    @property
    def details(self) -> dict[str, str]:
        """``detail`` per language, as a message parameter (services.messages)."""
        return {"en": self.detail, "de": self.detail_de}


def fetch_document(
    session: requests.Session,
    url: str,
    *,
    allowed_hosts: tuple[str, ...],
    max_bytes: int,
    timeout: tuple[float, float] = (5.0, 30.0),
    deadline: float = 60.0,
) -> bytes:
    """Download ``url``; redirects are followed only to allowed https hosts.

    ``deadline`` bounds the whole download (redirects included), not each read: a host that
    trickles a byte a second never trips a read timeout, but it does trip this.
    """
    give_up_at = time.monotonic() + deadline
    for _ in range(MAX_REDIRECTS + 1):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise DocumentFetchError(
                "personio-sync.document-url-forbidden", "the URL is malformed", permanent=True, detail_de="die URL ist fehlerhaft"
            ) from None
        if parts.scheme != "https" or not parts.hostname or parts.username or port not in (None, 443):
            raise DocumentFetchError(
                "personio-sync.document-url-forbidden", "only plain https URLs are allowed", permanent=True,
                detail_de="nur einfache https-URLs sind erlaubt",
            )
        if not host_allowed(parts.hostname, allowed_hosts):
            raise DocumentFetchError(
                "personio-sync.document-url-forbidden", f"host {parts.hostname} is not allowed", permanent=True,
                detail_de=f"der Host {parts.hostname} ist nicht erlaubt",
            )
        remaining = give_up_at - time.monotonic()
        if remaining <= 0:
            raise _too_slow(deadline)
        try:
            response = session.get(url, stream=True, timeout=(min(timeout[0], remaining), min(timeout[1], remaining)), allow_redirects=False)
        except requests.RequestException as exc:
            raise _network_error(exc) from exc
        with response:
            if response.is_redirect:
                url = urljoin(url, response.headers.get("Location", ""))
                continue
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise DocumentFetchError(
                    "personio-sync.document-fetch-failed", f"HTTP {response.status_code}", permanent=False, detail_de=f"HTTP {response.status_code}"
                )
            if response.status_code != 200:
                raise DocumentFetchError(
                    "personio-sync.document-fetch-failed", f"HTTP {response.status_code}", permanent=True, detail_de=f"HTTP {response.status_code}"
                )
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DocumentFetchError("personio-sync.document-too-large", f"{declared} bytes", permanent=True, detail_de=f"{declared} Bytes")
            chunks: list[bytes] = []
            received = 0
            try:
                while True:
                    # read1 returns whatever has arrived (at most 64 KiB), so the deadline is
                    # checked however slowly the bytes come.
                    chunk = response.raw.read1(64 * 1024, decode_content=True)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > max_bytes:
                        raise DocumentFetchError(
                            "personio-sync.document-too-large", f"more than {max_bytes} bytes", permanent=True, detail_de=f"mehr als {max_bytes} Bytes"
                        )
                    if time.monotonic() > give_up_at:
                        raise _too_slow(deadline)
                    chunks.append(chunk)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise _network_error(exc) from exc
            if received == 0:
                raise DocumentFetchError("personio-sync.document-fetch-failed", "empty file", permanent=True, detail_de="leere Datei")
            return b"".join(chunks)
    raise DocumentFetchError("personio-sync.document-fetch-failed", "too many redirects", permanent=True, detail_de="zu viele Weiterleitungen")


def _too_slow(deadline: float) -> DocumentFetchError:
    return DocumentFetchError(
        "personio-sync.document-fetch-failed", f"not downloaded within {deadline:g} s", permanent=False,
        detail_de=f"nicht innerhalb von {deadline:g} s geladen".replace(".", ","),
    )


def _network_error(exc: Exception) -> DocumentFetchError:
    # The exception's name only: its text may quote the URL.
    name = type(exc).__name__
    return DocumentFetchError("personio-sync.document-fetch-failed", name, permanent=False, detail_de=f"Netzwerkfehler {name}")
