"""fetch_feed over HTTP, with every Personio host mocked by ``responses``."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import inspect
import io
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses
from requests import Session
from responses import RequestsMock, matchers

from personio.feed import (
    MAX_FEED_BYTES,
    FeedDisabled,
    FeedError,
    FeedInvalid,
    FeedUnreachable,
    fetch_feed,
)

FEEDS = Path(__file__).parent / "feeds"
URL = "https://acme.jobs.personio.de/xml?language=en"
NORMAL = (FEEDS / "normal.xml").read_bytes()
EMPTY = (FEEDS / "empty.xml").read_bytes()
HTML = (FEEDS / "html_page.html").read_bytes()
XML = "application/xml; charset=utf-8"


@pytest.fixture
def rsps() -> Iterator[RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def session() -> Iterator[Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each Response.close() so tests can assert the connection is released."""
    calls: list[int] = []
    original = requests.Response.close

    def close(self: requests.Response) -> None:
        calls.append(self.status_code)
        original(self)

    monkeypatch.setattr(requests.Response, "close", close)
    return calls


class _BrokenStream(io.RawIOBase):
    """A body that yields ``first`` and then dies like a dropped connection."""

    def __init__(self, first: bytes) -> None:
        self._first = first
        self._reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        self._reads += 1
        if self._reads > 1:
            raise http.client.IncompleteRead(b"")
        buffer[: len(self._first)] = self._first
        return len(self._first)


class _CountingStream(io.RawIOBase):
    """A body that records how many bytes the client actually pulled."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        count = self._data.readinto(buffer)
        self.consumed += count
        return count


class _MustNotBeRead(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        raise AssertionError("the body must not be read")


# --- success --------------------------------------------------------------


def test_200_xml(rsps: RequestsMock, session: Session, closed: list[int]) -> None:
    rsps.get(
        URL,
        body=NORMAL,
        content_type=XML,
        headers={"ETag": '"v1"', "Last-Modified": "Mon, 15 Jan 2024 09:30:00 GMT"},
    )
    result = fetch_feed(session, URL)
    assert result.not_modified is False
    assert result.status == 200
    assert result.jobs is not None and [job.id for job in result.jobs] == [1000001, 1000002]
    assert result.etag == '"v1"'
    assert result.last_modified == "Mon, 15 Jan 2024 09:30:00 GMT"
    assert result.content_sha256 == hashlib.sha256(NORMAL).hexdigest()
    request = rsps.calls[0].request
    assert request.headers["Accept"] == "application/xml, text/xml"
    assert "If-None-Match" not in request.headers
    assert "If-Modified-Since" not in request.headers
    assert closed == [200]


def test_200_empty_account(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, body=EMPTY, content_type="text/xml")
    result = fetch_feed(session, URL)
    assert result.jobs == []
    assert result.etag is None and result.last_modified is None


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", NORMAL),  # wrong label, but the body starts with <?xml
        ("application/octet-stream", b"<workzag-jobs></workzag-jobs>"),
        ("", b"\xef\xbb\xbf<?xml version='1.0'?><workzag-jobs/>"),
    ],
)
def test_200_xml_body_with_a_non_xml_content_type(
    rsps: RequestsMock, session: Session, content_type: str, body: bytes
) -> None:
    rsps.get(URL, body=body, headers={"Content-Type": content_type})
    assert fetch_feed(session, URL).jobs is not None


def test_200_neither_xml_type_nor_xml_body(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, body=b'{"jobs": []}', content_type="application/json")
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == "feed.not_xml"


def test_200_xml_type_but_broken_body(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, body=NORMAL[:500], content_type=XML)
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == "feed.truncated"
    assert caught.value.url == URL
    assert caught.value.status == 200


# --- feed switched off / wrong name ---------------------------------------


def test_200_text_html_is_disabled_without_reading_the_body(
    rsps: RequestsMock, session: Session, closed: list[int]
) -> None:
    rsps.get(URL, body=io.BufferedReader(_MustNotBeRead()), content_type="text/html; charset=utf-8")
    with pytest.raises(FeedDisabled) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == "feed.html"
    assert "switched off" in str(caught.value)
    assert closed == [200]


@pytest.mark.parametrize("content_type", [XML, "text/plain", ""])
def test_200_html_body_is_disabled_whatever_the_content_type(
    rsps: RequestsMock, session: Session, content_type: str
) -> None:
    rsps.get(URL, body=HTML, headers={"Content-Type": content_type})
    with pytest.raises(FeedDisabled) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == "feed.html"


def test_200_bare_html_tag_is_disabled(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, body=b"\n  <HTML><body>Personio</body></HTML>", headers={"Content-Type": ""})
    with pytest.raises(FeedDisabled):
        fetch_feed(session, URL)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_disabled_and_never_followed(
    session: Session, closed: list[int], status: int
) -> None:
    target = "https://www.personio.de/"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(URL, status=status, headers={"Location": target})
        followed = rsps.get(target, body=EMPTY, content_type=XML)
        with pytest.raises(FeedDisabled) as caught:
            fetch_feed(session, URL)
        assert len(rsps.calls) == 1
        assert followed.call_count == 0
    error = caught.value
    assert (error.code, error.status, error.location, error.url) == (
        "feed.redirect", status, target, URL
    )
    assert error.retryable is False
    # requests itself closes a redirect response once even with allow_redirects=False;
    # ours is the last close.
    assert closed[-1] == status


def test_redirect_to_an_internal_address_is_not_followed(session: Session) -> None:
    # Nothing registered for the target: following it would raise ConnectionError.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(URL, status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        with pytest.raises(FeedDisabled) as caught:
            fetch_feed(session, URL)
        assert [call.request.url for call in rsps.calls] == [URL]
    assert caught.value.location == "http://169.254.169.254/latest/meta-data/"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "feed.not_found"),
        (410, "feed.not_found"),
        (401, "feed.forbidden"),
        (403, "feed.forbidden"),
    ],
)
def test_not_found_and_forbidden_are_disabled(
    rsps: RequestsMock, session: Session, closed: list[int], status: int, code: str
) -> None:
    rsps.get(URL, status=status, body=HTML, content_type="text/html")
    with pytest.raises(FeedDisabled) as caught:
        fetch_feed(session, URL)
    assert (caught.value.code, caught.value.status) == (code, status)
    assert caught.value.location is None
    assert closed == [status]


# --- conditional requests -------------------------------------------------


def test_304_not_modified_and_conditional_headers_sent(
    rsps: RequestsMock, session: Session, closed: list[int]
) -> None:
    sent = {"If-None-Match": '"v1"', "If-Modified-Since": "Mon, 15 Jan 2024 09:30:00 GMT"}
    # The matcher makes the mock answer only if both validators were sent.
    rsps.get(URL, status=304, headers={"ETag": '"v1"'}, match=[matchers.header_matcher(sent)])
    result = fetch_feed(
        session, URL, etag='"v1"', last_modified="Mon, 15 Jan 2024 09:30:00 GMT"
    )
    assert result.not_modified is True
    assert result.jobs is None
    assert result.content_sha256 is None
    assert result.status == 304
    assert result.etag == '"v1"'
    # Not repeated by the server: the validator we sent is still the current one.
    assert result.last_modified == "Mon, 15 Jan 2024 09:30:00 GMT"
    assert closed == [304]


def test_304_keeps_the_sent_etag_when_the_server_omits_it(
    rsps: RequestsMock, session: Session
) -> None:
    rsps.get(URL, status=304, match=[matchers.header_matcher({"If-None-Match": 'W/"abc"'})])
    result = fetch_feed(session, URL, etag='W/"abc"')
    assert result.not_modified and result.etag == 'W/"abc"' and result.last_modified is None


def test_changed_feed_returns_new_validators(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, body=NORMAL, content_type=XML, headers={"ETag": '"v2"'})
    result = fetch_feed(session, URL, etag='"v1"')
    assert rsps.calls[0].request.headers["If-None-Match"] == '"v1"'
    assert result.not_modified is False and result.etag == '"v2"'


# --- transient failures ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "feed.server_error"), (502, "feed.server_error"), (503, "feed.server_error"),
     (408, "feed.server_error"), (429, "feed.rate_limited")],
)
def test_5xx_and_429_are_unreachable_and_retryable(
    rsps: RequestsMock, session: Session, closed: list[int], status: int, code: str
) -> None:
    rsps.get(URL, status=status, headers={"Retry-After": "120"})
    with pytest.raises(FeedUnreachable) as caught:
        fetch_feed(session, URL)
    error = caught.value
    assert (error.code, error.status, error.retry_after) == (code, status, 120.0)
    assert error.retryable is True
    assert closed == [status]


def test_429_without_retry_after(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, status=429)
    with pytest.raises(FeedUnreachable) as caught:
        fetch_feed(session, URL)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("exception", "code"),
    [
        (requests.ConnectionError("refused"), "feed.connection"),
        (requests.exceptions.SSLError("bad cert"), "feed.connection"),
        (requests.Timeout("slow"), "feed.timeout"),
        (requests.exceptions.ConnectTimeout("slow connect"), "feed.timeout"),
        (requests.exceptions.ReadTimeout("slow read"), "feed.timeout"),
    ],
)
def test_connection_errors_and_timeouts_are_unreachable(
    rsps: RequestsMock, session: Session, exception: Exception, code: str
) -> None:
    rsps.get(URL, body=exception)
    with pytest.raises(FeedUnreachable) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == code
    assert caught.value.url == URL
    assert caught.value.status is None
    assert caught.value.__cause__ is exception


def test_connection_dropped_mid_body_is_unreachable(
    rsps: RequestsMock, session: Session, closed: list[int]
) -> None:
    rsps.get(URL, body=io.BufferedReader(_BrokenStream(b"<workzag-jobs>")), content_type=XML)
    with pytest.raises(FeedUnreachable) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == "feed.transfer_interrupted"
    assert isinstance(caught.value.__cause__, requests.exceptions.ChunkedEncodingError)
    assert closed == [200]


def test_timeouts_and_no_redirects_are_passed_to_requests(
    rsps: RequestsMock, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}
    original = session.get

    def spy(url: str, **kwargs: object) -> requests.Response:
        seen.update(kwargs)
        return original(url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "get", spy)
    rsps.get(URL, body=EMPTY, content_type=XML)
    fetch_feed(session, URL, timeout=(1.5, 7.0))
    assert seen["timeout"] == (1.5, 7.0)
    assert seen["allow_redirects"] is False
    assert seen["stream"] is True


# --- size limits and compression ------------------------------------------


def test_oversized_streamed_body_is_too_large(
    rsps: RequestsMock, session: Session, closed: list[int]
) -> None:
    body = b"<workzag-jobs>" + b" " * 300_000 + b"</workzag-jobs>"
    rsps.get(URL, body=body, content_type=XML)
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL, max_bytes=100_000)
    assert caught.value.code == "feed.too_large"
    assert closed == [200]


def test_streaming_stops_reading_soon_after_the_cap(
    rsps: RequestsMock, session: Session
) -> None:
    stream = _CountingStream(b"<workzag-jobs>" + b" " * (10 * 1024 * 1024) + b"</workzag-jobs>")
    rsps.get(URL, body=io.BufferedReader(stream), content_type=XML)
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL, max_bytes=100_000)
    assert caught.value.code == "feed.too_large"
    # One read chunk plus buffering past the cap at most, not the 10 MiB body.
    assert stream.consumed < 512 * 1024


def test_declared_oversized_body_is_refused_without_reading(
    rsps: RequestsMock, session: Session, closed: list[int]
) -> None:
    rsps.get(
        URL,
        body=io.BufferedReader(_MustNotBeRead()),
        content_type=XML,
        headers={"Content-Length": str(100_001)},
    )
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL, max_bytes=100_000)
    assert caught.value.code == "feed.too_large"
    assert closed == [200]


def test_body_exactly_at_the_cap_is_accepted(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, body=NORMAL, content_type=XML)
    assert fetch_feed(session, URL, max_bytes=len(NORMAL)).jobs is not None


def test_gzip_body_is_decompressed_and_hashed_decompressed(
    rsps: RequestsMock, session: Session
) -> None:
    gzipped = gzip.compress(NORMAL)
    rsps.get(URL, body=gzipped, content_type=XML, headers={"Content-Encoding": "gzip"})
    result = fetch_feed(session, URL)
    assert result.jobs is not None and len(result.jobs) == 2
    assert result.content_sha256 == hashlib.sha256(NORMAL).hexdigest()


def test_gzip_body_is_counted_after_decompression(
    rsps: RequestsMock, session: Session
) -> None:
    compressed = gzip.compress(NORMAL)
    assert len(compressed) < len(NORMAL) - 1
    rsps.get(
        URL,
        body=compressed,
        content_type=XML,
        headers={"Content-Encoding": "gzip", "Content-Length": str(len(compressed))},
    )
    # The compressed size is well under the cap; the decompressed one is not.
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL, max_bytes=len(NORMAL) - 1)
    assert caught.value.code == "feed.too_large"


def test_gzip_bomb_is_stopped_at_the_cap(
    rsps: RequestsMock, session: Session, closed: list[int]
) -> None:
    bomb = gzip.compress(b"<workzag-jobs>" + b" " * (8 * 1024 * 1024) + b"</workzag-jobs>")
    assert len(bomb) < 64 * 1024
    rsps.get(URL, body=bomb, content_type=XML, headers={"Content-Encoding": "gzip"})
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL, max_bytes=1024 * 1024)
    assert caught.value.code == "feed.too_large"
    assert closed == [200]


def test_corrupt_gzip_is_invalid(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, body=b"this is not gzip", content_type=XML, headers={"Content-Encoding": "gzip"})
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == "feed.bad_content_encoding"


def test_default_cap_is_20_mib(rsps: RequestsMock, session: Session) -> None:
    assert inspect.signature(fetch_feed).parameters["max_bytes"].default == MAX_FEED_BYTES
    assert MAX_FEED_BYTES == 20 * 1024 * 1024
    over_cap = b"<workzag-jobs>" + b" " * MAX_FEED_BYTES + b"</workzag-jobs>"
    rsps.get(URL, body=over_cap, content_type=XML)
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == "feed.too_large"


# --- hostile bodies arrive as FeedInvalid ---------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("billion_laughs.xml", "feed.dtd_forbidden"),
        ("xxe_file.xml", "feed.dtd_forbidden"),
        ("xxe_metadata.xml", "feed.dtd_forbidden"),
        ("wrong_root.xml", "feed.wrong_root"),
        ("non_integer_id.xml", "feed.no_valid_position"),
    ],
)
def test_hostile_feed_bodies(
    rsps: RequestsMock, session: Session, name: str, code: str
) -> None:
    rsps.get(URL, body=(FEEDS / name).read_bytes(), content_type=XML)
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL)
    assert caught.value.code == code
    assert caught.value.url == URL


def test_unexpected_status_is_invalid(rsps: RequestsMock, session: Session) -> None:
    rsps.get(URL, status=400, body=b"bad request")
    with pytest.raises(FeedInvalid) as caught:
        fetch_feed(session, URL)
    assert (caught.value.code, caught.value.status) == ("feed.unexpected_status", 400)


# --- error types ----------------------------------------------------------


def test_error_hierarchy() -> None:
    for cls in (FeedDisabled, FeedUnreachable, FeedInvalid):
        assert issubclass(cls, FeedError)
    assert FeedUnreachable.retryable is True
    assert FeedDisabled.retryable is False
    assert FeedInvalid.retryable is False


def test_errors_pickle_with_their_details() -> None:
    disabled = FeedDisabled("feed.redirect", "moved", url=URL, status=301, location="https://x/")
    clone = pickle.loads(pickle.dumps(disabled))
    assert (type(clone), clone.code, clone.status, clone.location, clone.url) == (
        FeedDisabled, "feed.redirect", 301, "https://x/", URL
    )
    unreachable = FeedUnreachable("feed.rate_limited", "slow down", status=429, retry_after=60.0)
    clone2 = pickle.loads(pickle.dumps(unreachable))
    assert (clone2.code, clone2.retry_after, clone2.retryable) == ("feed.rate_limited", 60.0, True)
