"""Downloading documents by URL: hosts, ports, size, and a deadline for the whole download."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

from services.documents import DocumentFetchError, fetch_document

HOSTS = ("files.example.com",)


class _SlowBody:
    """A response body that yields ``data`` one byte every ``delay`` seconds."""

    def __init__(self, data: bytes, delay: float) -> None:
        self._data = data
        self._delay = delay

    def _next(self) -> bytes:
        if not self._data:
            return b""
        time.sleep(self._delay)
        byte, self._data = self._data[:1], self._data[1:]
        return byte

    def read(self, amt: int | None = None) -> bytes:
        return self._next()

    def read1(self, amt: int | None = None) -> bytes:
        return self._next()

    def close(self) -> None:
        pass


class _Host(HTTPAdapter):
    """A document host in-process: answers every request with ``body`` (no network)."""

    def __init__(self, body: bytes, *, delay: float = 0.0, status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.body, self.delay, self.status, self.headers = body, delay, status, headers or {}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        raw = urllib3.HTTPResponse(
            body=_SlowBody(self.body, self.delay), headers=self.headers, status=self.status, preload_content=False
        )
        return self.build_response(request, raw)


def _session(host: _Host) -> requests.Session:
    session = requests.Session()
    session.mount("https://files.example.com", host)
    return session


def test_a_document_is_downloaded() -> None:
    assert fetch_document(_session(_Host(b"%PDF-1.4 cv")), "https://files.example.com/cv.pdf", allowed_hosts=HOSTS, max_bytes=100) == b"%PDF-1.4 cv"


def test_a_trickling_host_is_cut_off_at_the_deadline() -> None:
    """40 bytes at 5 per second would take 8 s; the deadline is 1 s."""
    started = time.monotonic()
    with pytest.raises(DocumentFetchError) as failed:
        fetch_document(_session(_Host(b"x" * 40, delay=0.2)), "https://files.example.com/cv.pdf", allowed_hosts=HOSTS, max_bytes=1000, deadline=1.0)
    assert time.monotonic() - started < 2.0
    assert failed.value.code == "personio-sync.document-fetch-failed"
    assert failed.value.permanent is False  # retried later, like any transient failure
    assert "within 1 s" in failed.value.detail


def test_a_document_over_the_limit_is_refused_while_streaming() -> None:
    with pytest.raises(DocumentFetchError) as refused:
        fetch_document(_session(_Host(b"x" * 50)), "https://files.example.com/cv.pdf", allowed_hosts=HOSTS, max_bytes=10)
    assert refused.value.code == "personio-sync.document-too-large"
    assert refused.value.permanent


@pytest.mark.parametrize(
    "url",
    [
        "https://files.example.com:abc/cv.pdf",
        "https://files.example.com:99999/cv.pdf",
        "https://[::1/cv.pdf",
        "https://files.example.com:8443/cv.pdf",
        "http://files.example.com/cv.pdf",
        "https://user:pw@files.example.com/cv.pdf",
        "https://elsewhere.example.com/cv.pdf",
    ],
)
def test_malformed_or_forbidden_urls_are_refused_without_a_request(url: str) -> None:
    with pytest.raises(DocumentFetchError) as refused:
        fetch_document(_session(_Host(b"never sent")), url, allowed_hosts=HOSTS, max_bytes=100)
    assert refused.value.code == "personio-sync.document-url-forbidden"
    assert refused.value.permanent


@pytest.mark.parametrize(
    ("host", "german"),
    [
        (_Host(b""), "leere Datei"),
        (_Host(b"x", status=404), "HTTP 404"),
        (_Host(b"x" * 50), "mehr als 10 Bytes"),
    ],
)
def test_a_failed_download_says_why_in_german_too(host: _Host, german: str) -> None:
    with pytest.raises(DocumentFetchError) as failed:
        fetch_document(_session(host), "https://files.example.com/cv.pdf", allowed_hosts=HOSTS, max_bytes=10)

    assert failed.value.details == {"en": failed.value.detail, "de": german}


def test_every_download_failure_carries_a_german_reason() -> None:
    """Each refusal in services.documents gives detail_de; without it German messages would quote English."""
    import ast
    import inspect

    import services.documents

    calls = [
        node
        for node in ast.walk(ast.parse(inspect.getsource(services.documents)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "DocumentFetchError"
    ]
    assert len(calls) >= 9
    assert all(any(k.arg == "detail_de" for k in call.keywords) for call in calls), [c.lineno for c in calls]
