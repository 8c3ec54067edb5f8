"""Downloading documents given by URL: allowed hosts only, https only, size-capped while streaming."""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from services.schemas import host_allowed

MAX_REDIRECTS = 3


class DocumentFetchError(Exception):
    """A document URL could not be downloaded; ``permanent`` says whether retrying can help."""

    def __init__(self, code: str, detail: str, *, permanent: bool) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.permanent = permanent


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
            raise DocumentFetchError("personio-sync.document-url-forbidden", "the URL is malformed", permanent=True) from None
        if parts.scheme != "https" or not parts.hostname or parts.username or port not in (None, 443):
            raise DocumentFetchError("personio-sync.document-url-forbidden", "only plain https URLs are allowed", permanent=True)
        if not host_allowed(parts.hostname, allowed_hosts):
            raise DocumentFetchError("personio-sync.document-url-forbidden", f"host {parts.hostname} is not allowed", permanent=True)
        remaining = give_up_at - time.monotonic()
        if remaining <= 0:
            raise DocumentFetchError("personio-sync.document-fetch-failed", f"not downloaded within {deadline:g} s", permanent=False)
        try:
            response = session.get(url, stream=True, timeout=(min(timeout[0], remaining), min(timeout[1], remaining)), allow_redirects=False)
        except requests.RequestException as exc:
            raise DocumentFetchError("personio-sync.document-fetch-failed", type(exc).__name__, permanent=False) from exc
        with response:
            if response.is_redirect:
                url = urljoin(url, response.headers.get("Location", ""))
                continue
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise DocumentFetchError("personio-sync.document-fetch-failed", f"HTTP {response.status_code}", permanent=False)
            if response.status_code != 200:
                raise DocumentFetchError("personio-sync.document-fetch-failed", f"HTTP {response.status_code}", permanent=True)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DocumentFetchError("personio-sync.document-too-large", f"{declared} bytes", permanent=True)
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
                        raise DocumentFetchError("personio-sync.document-too-large", f"more than {max_bytes} bytes", permanent=True)
                    if time.monotonic() > give_up_at:
                        raise DocumentFetchError("personio-sync.document-fetch-failed", f"not downloaded within {deadline:g} s", permanent=False)
                    chunks.append(chunk)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise DocumentFetchError("personio-sync.document-fetch-failed", type(exc).__name__, permanent=False) from exc
            if received == 0:
                raise DocumentFetchError("personio-sync.document-fetch-failed", "empty file", permanent=True)
            return b"".join(chunks)
    raise DocumentFetchError("personio-sync.document-fetch-failed", "too many redirects", permanent=True)
