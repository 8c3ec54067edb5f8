"""Check HTTP traffic against Personio's own OpenAPI description (test helper).

Usage::

    from tests.openapi import SpecValidationRecorder, validate_request, validate_response

    validate_request(response.request)             # raises SpecViolation
    validate_response(response.request, response)  # raises SpecViolation

    recorder = SpecValidationRecorder()
    recorder.attach(session)        # validates every response the session gets
    ...
    recorder.assert_clean()

The spec is loaded by ``sandbox.spec.load_spec`` (the copy in ``sandbox/data/``,
or the file ``$PERSONIO_OPENAPI_SPEC`` names), the same loader the sandbox's
self-check uses. Its ``servers`` point at
``https://api.personio.de`` and ``https://{YOUR_COMPANY}.jobs.personio.de``,
so requests to a local stand-in are validated as if they had been sent there:
scheme and host are rewritten before openapi-core sees them.

Deliberate, minimal deviations from the spec file (which is never edited):

* ``uploaded_document.extension`` lists ``ptt`` where Personio means ``ppt``;
  the loader adds ``ppt`` to the enum in memory so a correct ``.ppt`` upload
  answer is not reported.
* ``/xml`` inherits the path-level ``X-Company-ID`` header as *required*, but
  the feed is public and no client sends it; that one error is ignored for
  feed requests.
* The spec's ``XmlResponse`` schema is a JSON-style object that no real feed
  document matches (and the spec says ``application/xml`` where Personio
  sends ``text/xml``), so for feed responses only the status is checked
  (200, or 304 for a conditional GET). The feed structure is tested directly.
* Personio has no credentials endpoint, so ``PersonioClient.probe_credentials``
  posts ``{}`` to the applications endpoint on purpose and counts the 400 as
  "credentials work". A recorder with ``allow_credential_probe`` set does not
  report that one request (exactly ``POST /v1/recruiting/applications`` with
  body ``{}``); the answer to it is still checked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.validation.request.exceptions import MissingRequiredParameter

from sandbox.spec import API_ORIGIN, load_spec
from sandbox.spec import VENDORED_SPEC as VENDORED_SPEC  # re-exported for test_spec_copy

# Any host matches the spec's "{YOUR_COMPANY}.jobs.personio.de" template.
FEED_ORIGIN = "https://personio.jobs.personio.de"
_FEED_STATUSES = (200, 304)
# What the stand-in's feed faults answer (a disabled feed redirects or is 404, a feed that
# is down is 503): tests that set such a feed mode add these to outside_spec_statuses.
FEED_FAULT_STATUSES = frozenset({301, 404, 503})


class SpecViolation(AssertionError):
    """A request or response does not conform to Personio's OpenAPI spec."""

    def __init__(self, what: str, method: str, url: str, errors: list[Exception]) -> None:
        self.errors = errors
        details = "; ".join(_describe(error) for error in errors)
        super().__init__(f"{what} {method} {url} violates the OpenAPI spec: {details}")


# The shared original beside the repo; VENDORED_SPEC is an unchanged copy of it, so a clone
# without shared/ beside it still validates (test_spec_copy checks that they match wherever
# both exist).
SHARED_SPEC = Path(__file__).resolve().parents[2] / "shared/personio/personio-recruiting-api.yaml"


def is_feed_url(url: str) -> bool:
    """True for the jobs feed, Personio's (``/xml``) or the sandbox's (``/feeds/{d}/xml``)."""
    path = urlsplit(url).path
    return path == "/xml" or (path.startswith("/feeds/") and path.endswith("/xml"))


def spec_url(url: str) -> str:
    """Rewrite a local URL to the origin the spec declares for that path."""
    parts = urlsplit(url)
    if is_feed_url(url):
        origin = urlsplit(FEED_ORIGIN)
        return urlunsplit((origin.scheme, origin.netloc, "/xml", parts.query, ""))
    origin = urlsplit(API_ORIGIN)
    return urlunsplit((origin.scheme, origin.netloc, parts.path, parts.query, ""))


def as_spec_request(prepared: requests.PreparedRequest) -> RequestsOpenAPIRequest:
    """Wrap a PreparedRequest for openapi-core as if sent to the spec's server."""
    if prepared.url is None:
        raise ValueError("request has no URL")
    copy = prepared.copy()
    copy.url = spec_url(prepared.url)
    return RequestsOpenAPIRequest(copy)


def request_errors(prepared: requests.PreparedRequest) -> list[Exception]:
    errors = list(load_spec().iter_request_errors(as_spec_request(prepared)))
    if prepared.url is not None and is_feed_url(prepared.url):
        errors = [e for e in errors if not _is_feed_company_header_error(e)]
    return errors


def response_errors(
    prepared: requests.PreparedRequest, response: requests.Response
) -> list[Exception]:
    if prepared.url is not None and is_feed_url(prepared.url):
        if response.status_code in _FEED_STATUSES:
            return []
        return [ValueError(f"feed status {response.status_code} not in {_FEED_STATUSES}")]
    return list(
        load_spec().iter_response_errors(
            as_spec_request(prepared), RequestsOpenAPIResponse(response)
        )
    )


def validate_request(prepared: requests.PreparedRequest) -> None:
    """Raise SpecViolation if the request breaks the spec."""
    errors = request_errors(prepared)
    if errors:
        raise SpecViolation("request", str(prepared.method), str(prepared.url), errors)


def validate_response(prepared: requests.PreparedRequest, response: requests.Response) -> None:
    """Raise SpecViolation if the response (to ``prepared``) breaks the spec."""
    errors = response_errors(prepared, response)
    if errors:
        raise SpecViolation("response to", str(prepared.method), str(prepared.url), errors)


def is_spec_url(url: str) -> bool:
    """True for paths the spec describes (the sandbox's admin API is not one)."""
    path = urlsplit(url).path
    return is_feed_url(url) or path in (
        "/v1/recruiting/applications",
        "/v1/recruiting/applications/documents",
        "/recruiting/applicant",
    )


@dataclass
class Exchange:
    """One validated request/response pair."""

    method: str
    url: str
    status: int
    request_errors: list[Exception] = field(default_factory=list)
    response_errors: list[Exception] = field(default_factory=list)


class SpecValidationRecorder:
    """Validates every exchange it sees and keeps the findings for assertions.

    Hook it into a ``requests.Session`` with :meth:`attach`, or feed it
    responses with :meth:`record`. Request checks can be switched off for
    tests that send deliberately invalid requests (e.g. the ``{}`` probe).
    Exchanges with paths the spec does not describe are ignored. Tests that
    run the credential probe set ``allow_credential_probe`` (see the module doc).
    Tests that inject a fault Personio does not document (a 503, a feed that is
    down) add its status to ``outside_spec_statuses``: answers with such a status
    are not reported, everything else still is.
    """

    def __init__(
        self,
        *,
        validate_requests: bool = True,
        validate_responses: bool = True,
        allow_credential_probe: bool = False,
    ) -> None:
        self.validate_requests = validate_requests
        self.validate_responses = validate_responses
        self.allow_credential_probe = allow_credential_probe
        self.outside_spec_statuses: set[int] = set()
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def attach(self, session: requests.Session) -> requests.Session:
        session.hooks.setdefault("response", []).append(self._hook)
        return session

    def detach(self, session: requests.Session) -> None:
        hooks = session.hooks.get("response", [])
        if self._hook in hooks:
            hooks.remove(self._hook)

    def _hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self.record(response)
        return response

    def record(self, response: requests.Response) -> Exchange | None:
        """Validate ``response`` and the request that produced it."""
        prepared = response.request
        if prepared.url is None or not is_spec_url(prepared.url):
            return None
        exchange = Exchange(str(prepared.method), prepared.url, response.status_code)
        if self.validate_requests and not (self.allow_credential_probe and is_credential_probe(prepared)):
            exchange.request_errors = request_errors(prepared)
        if self.validate_responses and response.status_code not in self.outside_spec_statuses:
            exchange.response_errors = response_errors(prepared, response)
        with self._lock:
            self.exchanges.append(exchange)
        return exchange

    @property
    def violations(self) -> list[str]:
        with self._lock:
            exchanges = list(self.exchanges)
        found = []
        for ex in exchanges:
            for error in ex.request_errors:
                found.append(f"request {ex.method} {ex.url}: {_describe(error)}")
            for error in ex.response_errors:
                found.append(f"response {ex.status} to {ex.method} {ex.url}: {_describe(error)}")
        return found

    def assert_clean(self, min_exchanges: int = 1) -> None:
        """Fail if any exchange broke the spec, or fewer than expected were seen."""
        violations = self.violations
        assert not violations, "OpenAPI violations:\n" + "\n".join(violations)
        assert len(self.exchanges) >= min_exchanges, (
            f"expected at least {min_exchanges} validated exchange(s), saw {len(self.exchanges)}"
        )


def is_credential_probe(prepared: requests.PreparedRequest) -> bool:
    """True for the probe's deliberately empty application (see the module doc)."""
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    return (
        prepared.method == "POST"
        and prepared.url is not None
        and urlsplit(prepared.url).path == "/v1/recruiting/applications"
        and body == b"{}"
    )


def _is_feed_company_header_error(error: Exception) -> bool:
    return isinstance(error, MissingRequiredParameter) and error.name == "X-Company-ID"


def _describe(error: Exception) -> str:
    # openapi-core nests the schema errors that say *what* is wrong in __cause__
    # or schema_errors; surface them, the outer message alone is often vague.
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None)
    if schema_errors:
        text += " [" + "; ".join(getattr(e, "message", str(e)) for e in schema_errors) + "]"
    elif cause is not None:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return text
