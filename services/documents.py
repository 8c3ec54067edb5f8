"""Downloading documents given by URL: allowed hosts only, https only, size-capped while streaming."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import requests

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
) -> bytes:
    """Download ``url``; redirects are followed only to allowed https hosts."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.port not in (None, 443):
            raise DocumentFetchError("personio-sync.document-url-forbidden", "only plain https URLs are allowed", permanent=True)
        if not host_allowed(parts.hostname, allowed_hosts):
            raise DocumentFetchError("personio-sync.document-url-forbidden", f"host {parts.hostname} is not allowed", permanent=True)
        try:
            response = session.get(url, stream=True, timeout=timeout, allow_redirects=False)
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
                for chunk in response.iter_content(64 * 1024):
                    received += len(chunk)
                    if received > max_bytes:
                        raise DocumentFetchError("personio-sync.document-too-large", f"more than {max_bytes} bytes", permanent=True)
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise DocumentFetchError("personio-sync.document-fetch-failed", type(exc).__name__, permanent=False) from exc
            if received == 0:
                raise DocumentFetchError("personio-sync.document-fetch-failed", "empty file", permanent=True)
            return b"".join(chunks)
    raise DocumentFetchError("personio-sync.document-fetch-failed", "too many redirects", permanent=True)
