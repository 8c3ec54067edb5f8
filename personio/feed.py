"""Fetch and parse a company's public Personio jobs XML feed, defensively.

The feed is untrusted input from the internet (docs/personio.md, "Jobs XML feed" and
"The feed as untrusted input"): we never follow redirects, cap the body after
decompression, refuse DTDs and entities, bound the nesting depth ourselves
(expat happily accepts 100 000 levels) and build one ``<position>`` subtree
at a time so memory stays flat however many jobs the feed holds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict, Unpack
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import requests
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import XMLParser

from personio.errors import PersonioError, parse_retry_after

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "FEED_ROOT",
    "MAX_FEED_BYTES",
    "FeedDisabled",
    "FeedError",
    "FeedFetch",
    "FeedInvalid",
    "FeedJob",
    "FeedJobs",
    "FeedSalary",
    "FeedUnreachable",
    "SkippedPosition",
    "fetch_feed",
    "parse_feed",
]

MAX_FEED_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_DEPTH = 32
FEED_ROOT = "workzag-jobs"

_CHUNK_BYTES = 64 * 1024
# Job ids become bigint columns; int() alone would also accept "+1", "1_000"
# and non-ASCII digits, none of which Personio sends.
_ID = re.compile(r"[0-9]{1,19}")
_DIGITS = re.compile(r"[0-9]{1,12}")
_MAX_ID = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,6})?")
# Both "+0200" and "+02:00" (and "Z") appear in real feeds; an offset is
# required because a naive timestamp cannot be placed in time reliably.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})"
)
# expat error numbers for encoding problems (XML_ERROR_UNKNOWN_ENCODING,
# XML_ERROR_INCORRECT_ENCODING).
_EXPAT_ENCODING_ERRORS = frozenset({18, 19})
_DISABLED_HINT = (
    "the XML feed is switched off or the company name is wrong "
    "(Personio: Settings → Recruiting → Career page → Activations → Enable XML feed)"
)


# --- errors ---------------------------------------------------------------


class FeedError(PersonioError):
    """Base of every jobs-feed failure; ``code`` (= ``reason_code``) is a stable ``feed.*`` string.

    Part of the client's error tree so callers can catch ``PersonioError`` and
    ask ``retryable`` the same way for the feed and the recruiting API.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason_code = code
        self.message = message
        self.url = url
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery and multiprocessing pickle exceptions; the default reduce
        # would call cls(message) and lose ``code``.
        return (self.__class__, (self.code, self.message), self.__dict__)


class _Where(TypedDict, total=False):
    """Where a feed failure happened: the keywords every ``FeedError`` subclass passes on."""

    url: str | None
    status: int | None


class FeedDisabled(FeedError):
    """Personio answered, but not with a feed: the feed is off or the name is wrong.

    ``location`` holds the redirect target when the answer was a 3xx.
    """

    def __init__(
        self, code: str, message: str, *, location: str | None = None, **where: Unpack[_Where]
    ) -> None:
        super().__init__(code, message, **where)
        self.location = location


class FeedUnreachable(FeedError):
    """Transient: connection error, timeout, 429 or 5xx. Retry later.

    ``retry_after`` is the server's Retry-After in seconds, when it sent one.
    """

    retryable = True

    def __init__(
        self, code: str, message: str, *, retry_after: float | None = None, **where: Unpack[_Where]
    ) -> None:
        super().__init__(code, message, **where)
        self.retry_after = retry_after


# Every code a FeedUnreachable carries: what a stored ``feed_error`` says about retrying.
UNREACHABLE_CODES = frozenset({"feed.timeout", "feed.connection", "feed.rate_limited", "feed.server_error", "feed.transfer_interrupted"})


class FeedInvalid(FeedError):
    """The body is not a usable feed (not XML, another root, malformed, hostile, oversized,
    or no valid position at all). Permanent: fetching again returns the same body."""


# --- data -----------------------------------------------------------------


@dataclass(frozen=True)
class FeedSalary:
    min: Decimal | None
    max: Decimal | None
    currency_code: str | None
    currency_symbol: str | None
    type: str | None


@dataclass(frozen=True)
class FeedJob:
    """One ``<position>``. Job descriptions (large HTML) are not kept, only their headings."""

    id: int
    name: str
    office: str | None
    additional_offices: tuple[str, ...]
    department: str | None
    recruiting_category: str | None
    employment_type: str | None
    seniority: str | None
    schedule: str | None
    years_of_experience: str | None
    keywords: str | None
    occupation: str | None
    occupation_category: str | None
    subcompany: str | None
    created_at: datetime | None
    salary: FeedSalary | None
    description_sections: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkippedPosition:
    """A ``<position>`` left out of the result, and why.

    ``index`` counts positions from 1 in document order; ``id`` is the job id
    when the position had a usable one. ``reason`` is a stable ``feed.*`` code:
    ``feed.position_without_id``, ``feed.bad_id``, ``feed.position_without_name``
    or ``feed.duplicate_id`` (the first position with an id is kept).
    """

    index: int
    id: int | None
    reason: str
    detail: str


class FeedJobs(list[FeedJob]):
    """The jobs of a feed, in document order, plus the positions that were skipped.

    A list, so code that only wants the jobs can treat it as one; an invalid
    position costs that position, never the whole feed.
    """

    def __init__(self, jobs: list[FeedJob] | None = None, skipped: list[SkippedPosition] | None = None) -> None:
        super().__init__(jobs or ())
        self.skipped: list[SkippedPosition] = list(skipped or ())

    @property
    def skipped_ids(self) -> list[int]:
        """The ids of the skipped positions, where they had one."""
        return [position.id for position in self.skipped if position.id is not None]


@dataclass(frozen=True)
class FeedFetch:
    """Outcome of :func:`fetch_feed`; ``jobs`` is None exactly when ``not_modified``."""

    not_modified: bool
    jobs: FeedJobs | None
    etag: str | None
    last_modified: str | None
    content_sha256: str | None
    status: int


# --- parsing --------------------------------------------------------------


def parse_feed(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_bytes: int = MAX_FEED_BYTES,
) -> FeedJobs:
    """Parse a complete feed document into jobs, in document order.

    An empty ``<workzag-jobs/>`` is a valid feed with zero jobs. A position
    without a usable ``<id>`` or ``<name>``, or with an id seen before, is
    skipped and listed in ``FeedJobs.skipped``; the other positions are kept.

    Raises:
        FeedInvalid: with ``code`` one of ``feed.too_large``, ``feed.empty_body``,
            ``feed.dtd_forbidden``, ``feed.entities_forbidden``,
            ``feed.external_reference_forbidden``, ``feed.bad_encoding``,
            ``feed.malformed``, ``feed.truncated``, ``feed.wrong_root``,
            ``feed.too_deep``, or ``feed.no_valid_position`` when the feed has
            positions but every one of them is invalid (refused rather than
            read as "no open jobs", which would unpublish every cached job).
    """
    if len(data) > max_bytes:
        raise FeedInvalid(
            "feed.too_large", f"feed body is {len(data)} bytes, more than the {max_bytes} allowed"
        )
    if not data or data.isspace():  # isspace(): no copy of a 20 MB body
        raise FeedInvalid("feed.empty_body", "feed body is empty")
    builder = _FeedBuilder(max_depth)
    parser = XMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    # FeedInvalid raised by the builder (depth, root, positions) passes
    # straight through: it is not one of the parser errors caught here.
    try:
        parser.feed(data)
    except _PARSER_ERRORS as exc:
        raise _parse_failure(exc, at_end=False) from exc
    try:
        parser.close()
    except _PARSER_ERRORS as exc:
        # Errors that only surface at close() mean the input stopped mid-document.
        raise _parse_failure(exc, at_end=True) from exc
    if builder.skipped and not builder.jobs:
        first = builder.skipped[0]
        raise FeedInvalid(
            "feed.no_valid_position",
            f"none of the feed's {len(builder.skipped)} positions is valid; "
            f"first problem: {first.detail}",
        )
    return FeedJobs(builder.jobs, builder.skipped)


# DTDForbidden & co. are ValueErrors; pyexpat also reports an unknown declared
# encoding as LookupError and an unsupported one (UTF-32) as ValueError.
_PARSER_ERRORS = (ParseError, LookupError, ValueError)


def _parse_failure(exc: Exception, *, at_end: bool) -> FeedInvalid:
    if isinstance(exc, DTDForbidden):
        return FeedInvalid("feed.dtd_forbidden", "feed contains a DOCTYPE/DTD, which is refused")
    if isinstance(exc, EntitiesForbidden):
        return FeedInvalid(
            "feed.entities_forbidden", "feed declares XML entities, which is refused"
        )
    if isinstance(exc, ExternalReferenceForbidden):
        return FeedInvalid(
            "feed.external_reference_forbidden", "feed references an external resource"
        )
    if isinstance(exc, ParseError):
        if getattr(exc, "code", None) in _EXPAT_ENCODING_ERRORS:
            return FeedInvalid("feed.bad_encoding", f"feed encoding is wrong: {exc}")
        if at_end:
            return FeedInvalid(
                "feed.truncated", f"feed ends before the document is complete: {exc}"
            )
        return FeedInvalid("feed.malformed", f"feed is not well-formed XML: {exc}")
    return FeedInvalid("feed.bad_encoding", f"feed encoding is not supported: {exc}")


class _FeedBuilder:
    """expat target: bounds depth, checks the root, turns each position into a FeedJob.

    Only the ``<position>`` currently being read is held as a tree; it is
    dropped as soon as it has been converted.
    """

    def __init__(self, max_depth: int) -> None:
        self._max_depth = max_depth
        self._depth = 0
        self._position: TreeBuilder | None = None
        self._seen_ids: set[int] = set()
        self._index = 0
        self.jobs: list[FeedJob] = []
        self.skipped: list[SkippedPosition] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > self._max_depth:
            raise FeedInvalid(
                "feed.too_deep", f"feed elements nest deeper than {self._max_depth} levels"
            )
        if self._depth == 1:
            if tag != FEED_ROOT:
                raise FeedInvalid(
                    "feed.wrong_root",
                    f"feed root element is <{tag[:80]}>, expected <{FEED_ROOT}>",
                )
        elif self._depth == 2 and tag == "position":
            self._position = TreeBuilder()
        if self._position is not None:
            # The feed carries nothing in attributes; not storing them keeps
            # hostile attribute floods out of memory.
            self._position.start(tag, {})

    def data(self, text: str) -> None:
        if self._position is not None:
            self._position.data(text)

    def end(self, tag: str) -> None:
        self._depth -= 1
        if self._position is None:
            return
        element = self._position.end(tag)
        if self._depth == 1:
            self._position = None
            self._index += 1
            try:
                job = _position_to_job(element, index=self._index)
            except _BadPosition as bad:
                self.skipped.append(SkippedPosition(self._index, bad.job_id, bad.reason, bad.detail))
                return
            if job.id in self._seen_ids:
                self.skipped.append(SkippedPosition(
                    self._index, job.id, "feed.duplicate_id",
                    f"position #{self._index} repeats job id {job.id}; the first one is kept",
                ))
                return
            self._seen_ids.add(job.id)
            self.jobs.append(job)

    def close(self) -> list[FeedJob]:
        return self.jobs


def _text(element: Element | None) -> str | None:
    if element is None:
        return None
    text = "".join(element.itertext()).strip()
    return text or None


class _BadPosition(Exception):
    """One position cannot become a job; the builder skips it."""

    def __init__(self, reason: str, detail: str, job_id: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.job_id = job_id


def _position_to_job(position: Element, *, index: int) -> FeedJob:
    raw_id = _text(position.find("id"))
    if raw_id is None:
        raise _BadPosition("feed.position_without_id", f"position #{index} has no <id>")
    if not _ID.fullmatch(raw_id) or not 0 < int(raw_id) <= _MAX_ID:
        raise _BadPosition(
            "feed.bad_id",
            f"position #{index} has id {raw_id[:40]!r}, expected a positive integer",
        )
    job_id = int(raw_id)
    name = _text(position.find("name"))
    if name is None:
        raise _BadPosition(
            "feed.position_without_name", f"position #{index} (id {job_id}) has no <name>", job_id
        )

    def field(tag: str) -> str | None:
        return _text(position.find(tag))

    return FeedJob(
        id=job_id,
        name=name,
        office=field("office"),
        additional_offices=_texts(position.findall("additionalOffices/office")),
        department=field("department"),
        recruiting_category=field("recruitingCategory"),
        employment_type=field("employmentType"),
        seniority=field("seniority"),
        schedule=field("schedule"),
        years_of_experience=field("yearsOfExperience"),
        keywords=field("keywords"),
        occupation=field("occupation"),
        occupation_category=field("occupationCategory"),
        subcompany=field("subcompany"),
        created_at=_timestamp(field("createdAt")),
        salary=_salary(position.find("salaryInformation")),
        description_sections=_texts(position.findall("jobDescriptions/jobDescription/name")),
    )


def _texts(elements: list[Element]) -> tuple[str, ...]:
    return tuple(text for text in map(_text, elements) if text is not None)


# Optional fields degrade to None when unparseable: one odd salary or date
# must not stop every other job of the tenant from syncing.


def _timestamp(text: str | None) -> datetime | None:
    if text is None or not _TIMESTAMP.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _decimal(text: str | None) -> Decimal | None:
    if text is None or not _DECIMAL.fullmatch(text):
        return None
    return Decimal(text)


def _salary(element: Element | None) -> FeedSalary | None:
    if element is None:
        return None
    salary = FeedSalary(
        min=_decimal(_text(element.find("min"))),
        max=_decimal(_text(element.find("max"))),
        currency_code=_text(element.find("currencyCode")),
        currency_symbol=_text(element.find("currencySymbol")),
        type=_text(element.find("type")),
    )
    if salary == FeedSalary(None, None, None, None, None):
        return None
    return salary


# --- fetching -------------------------------------------------------------


def fetch_feed(
    session: requests.Session,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: tuple[float, float] = (5.0, 30.0),
    max_bytes: int = MAX_FEED_BYTES,
) -> FeedFetch:
    """GET the feed at ``url`` (built by ``personio.domain.feed_url``) and parse it.

    Sends ``If-None-Match``/``If-Modified-Since`` when given; a 304 comes back
    as ``FeedFetch(not_modified=True, jobs=None, ...)``.

    Raises:
        FeedDisabled: any redirect, 401/403/404/410, or an HTML page.
        FeedUnreachable: connection error, timeout, interrupted transfer, 408, 429, 5xx.
        FeedInvalid: anything :func:`parse_feed` refuses, a body over ``max_bytes``
            (counted after decompression), a non-XML body or another status.
    """
    headers = {"Accept": "application/xml, text/xml"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        # Redirects are never followed: a moved or retired company answers
        # 301 -> personio.de, and following would also bypass the host check.
        response = session.get(
            url, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        )
    except requests.Timeout as exc:
        raise FeedUnreachable("feed.timeout", f"GET {url} timed out", url=url) from exc
    except requests.ConnectionError as exc:
        raise FeedUnreachable("feed.connection", f"GET {url} failed to connect", url=url) from exc
    try:
        return _read_response(response, url, etag, last_modified, max_bytes)
    except FeedError as exc:
        exc.url = exc.url or url
        exc.status = exc.status or response.status_code
        raise
    finally:
        response.close()


def _read_response(
    response: requests.Response,
    url: str,
    etag: str | None,
    last_modified: str | None,
    max_bytes: int,
) -> FeedFetch:
    status = response.status_code
    if status == 304:
        # A 304 need not repeat the validators; the ones we sent stay valid.
        return FeedFetch(
            not_modified=True,
            jobs=None,
            etag=response.headers.get("ETag") or etag,
            last_modified=response.headers.get("Last-Modified") or last_modified,
            content_sha256=None,
            status=status,
        )
    if 300 <= status < 400:
        location = response.headers.get("Location")
        raise FeedDisabled(
            "feed.redirect",
            f"GET {url} answered {status} redirecting to {location!r}: {_DISABLED_HINT}",
            status=status,
            location=location,
        )
    if status in (401, 403):
        raise FeedDisabled("feed.forbidden", f"GET {url} answered {status}: {_DISABLED_HINT}")
    if status in (404, 410):
        raise FeedDisabled("feed.not_found", f"GET {url} answered {status}: {_DISABLED_HINT}")
    if status == 429:
        raise FeedUnreachable(
            "feed.rate_limited",
            f"GET {url} answered 429 (rate limited)",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status == 408 or status >= 500:
        raise FeedUnreachable(
            "feed.server_error",
            f"GET {url} answered {status}",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status != 200:
        raise FeedInvalid(
            "feed.unexpected_status", f"GET {url} answered unexpected status {status}"
        )

    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type:
        # Decided on the header alone so a marketing page is never downloaded.
        raise FeedDisabled("feed.html", f"GET {url} returned an HTML page: {_DISABLED_HINT}")
    body, digest = _read_capped(response, url, max_bytes)
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise FeedDisabled("feed.html", f"GET {url} returned an HTML page: {_DISABLED_HINT}")
    if "xml" not in content_type and not head.startswith((b"<?xml", b"<" + FEED_ROOT.encode())):
        raise FeedInvalid(
            "feed.not_xml", f"GET {url} returned {content_type or 'no content type'}, not XML"
        )
    jobs = parse_feed(body, max_bytes=max_bytes)
    return FeedFetch(
        not_modified=False,
        jobs=jobs,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        content_sha256=digest,
        status=status,
    )


def _read_capped(response: requests.Response, url: str, max_bytes: int) -> tuple[bytes, str]:
    too_large = FeedInvalid(
        "feed.too_large", f"GET {url} returned more than {max_bytes} bytes"
    )
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    declared = response.headers.get("Content-Length", "").strip()
    if encoding in ("", "identity") and _DIGITS.fullmatch(declared) and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    digest = hashlib.sha256()
    try:
        # iter_content yields decompressed bytes, so the cap also stops
        # gzip bombs, whatever Content-Length claimed.
        for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
            if len(body) + len(chunk) > max_bytes:
                raise too_large
            body += chunk
            digest.update(chunk)
    except requests.exceptions.ChunkedEncodingError as exc:
        raise FeedUnreachable("feed.transfer_interrupted", f"GET {url} body was cut off") from exc
    except requests.exceptions.ContentDecodingError as exc:
        raise FeedInvalid(
            "feed.bad_content_encoding", f"GET {url} body could not be decompressed"
        ) from exc
    except requests.Timeout as exc:
        raise FeedUnreachable("feed.timeout", f"GET {url} timed out reading the body") from exc
    except requests.ConnectionError as exc:
        raise FeedUnreachable("feed.connection", f"GET {url} connection lost") from exc
    return bytes(body), digest.hexdigest()

