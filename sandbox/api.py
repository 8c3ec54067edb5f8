"""Handlers of the recruiting API (documents, applications) and of the jobs feed.

Both API endpoints check, in this order: credentials (401), feature flags
(403), the per company rate limit (429), injected faults, then the request
itself. ``SandboxConfig.latency`` delays these answers, never admin answers.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

from personio.domain import FEED_LANGUAGES
from sandbox import feeds
from sandbox.config import CompanyConfig
from sandbox.framing import MAX_JSON_BYTES, Drop, FramedRequestHandler
from sandbox.multipart import MultipartError, form_boundary, parse_multipart
from sandbox.records import FeedSnapshot
from sandbox.rules import (
    MIMETYPES,
    error_body,
    field_error_body,
    filed_phase,
    generic_error,
    validate_application,
)
from sandbox.state import SandboxState

logger = logging.getLogger("sandbox")

# Bodies beyond this are never buffered: uploads are only ever as large as
# max_document_bytes plus a little multipart framing.
_MULTIPART_SLACK = 64 * 1024


@dataclass
class _Reply:
    status: int
    payload: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


def _fault_reply(status: int) -> _Reply:
    # A 429 from a fault looks like the real one: no body.
    if status == 429:
        return _Reply(429, None)
    return _Reply(status, error_body(status, "Injected fault"))


def _too_big(limit: int) -> _Reply:
    return _Reply(413, field_error_body("file", "errors.file-too-big", max_bytes=limit))


def _missing_file(detail: str) -> dict[str, Any]:
    body = field_error_body("file", "errors.attribute-validation.required-attribute")
    body["errors"].append(generic_error(422, detail))
    return body


class ApiHandlers(FramedRequestHandler):
    """The Personio-facing endpoints: recruiting API and jobs feed."""

    def _sleep_latency(self) -> None:
        low, high = self.state.latency()
        if high > 0:
            time.sleep(random.uniform(low, high))

    # ---------------------------------------------------------- API endpoints

    def _authenticate(self) -> CompanyConfig | None:
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        company_header = (self.headers.get("X-Company-ID") or "").strip()
        if scheme.lower() != "bearer" or not token.strip() or not company_header.isdigit():
            return None
        return self.state.authenticate(int(company_header), token.strip())

    def _api(self, endpoint: str) -> None:
        """Shared pipeline of both API endpoints: auth, features, limit, faults."""
        cap = (
            self.state.max_document_bytes() + _MULTIPART_SLACK
            if endpoint == "documents"
            else MAX_JSON_BYTES
        )
        body, overflowed = self._read_body(cap)
        company = self._authenticate()
        if company is None:
            reply = _Reply(401, error_body(401, "The API token and/or company id was not recognized."))
            self._finish_api(None, endpoint, body, reply)
            return
        refused = self._gatekeep(company, endpoint)
        if refused is not None:
            self._finish_api(company, endpoint, body, refused)
            return
        fault = self.state.take_fault(company.company_id, endpoint)
        if fault is not None and fault.kind == "status":
            assert fault.status is not None
            self._finish_api(company, endpoint, body, _fault_reply(fault.status))
            return
        if fault is not None and fault.kind == "drop":
            self._drop(company, endpoint)
        if endpoint == "documents":
            reply = self._upload_document(company, body, overflowed)
        else:
            reply = self._create_application(company, body, overflowed)
        if fault is not None and fault.kind == "drop_after_commit":
            self._drop(company, endpoint)
        if fault is not None and fault.kind == "delay_after_commit":
            time.sleep(fault.delay)
        self._finish_api(company, endpoint, body, reply)

    def _gatekeep(self, company: CompanyConfig, endpoint: str) -> _Reply | None:
        if not company.recruiting_enabled:
            return _Reply(403, error_body(403, "feature.recruiting.disabled"))
        if not company.public_api_enabled:
            return _Reply(403, error_body(403, "feature.public-api.disabled"))
        wait = self.state.acquire(company.company_id, endpoint)
        if wait is None:
            return None
        headers: dict[str, str] = {}
        if self.state.send_retry_after():
            headers["Retry-After"] = SandboxState.retry_after_header(wait)
        return _Reply(429, None, headers)

    def _drop(self, company: CompanyConfig, endpoint: str) -> NoReturn:
        self.state.record_response(company.company_id, endpoint, "dropped")
        self._sleep_latency()
        raise Drop()

    def _finish_api(
        self, company: CompanyConfig | None, endpoint: str, request_body: bytes, reply: _Reply
    ) -> None:
        self._sleep_latency()
        body = b"" if reply.payload is None else json.dumps(reply.payload).encode("utf-8")
        content_type = None if reply.payload is None else "application/json"
        if self.state.validate_against_openapi():
            reply, body, content_type = self._spec_checked(reply, body, content_type, request_body)
        self.state.record_response(company.company_id if company else None, endpoint, reply.status)
        self._send(reply.status, body, content_type, reply.headers)

    def _spec_checked(
        self, reply: _Reply, body: bytes, content_type: str | None, request_body: bytes
    ) -> tuple[_Reply, bytes, str | None]:
        response_headers = dict(reply.headers)
        if content_type:
            response_headers["Content-Type"] = content_type
        problems = self.server.spec_guard.violations(
            "POST",
            urlsplit(self.path).path,
            dict(self.headers.items()),
            request_body,
            reply.status,
            response_headers,
            body,
        )
        if not problems:
            return reply, body, content_type
        logger.error("sandbox answer violates the OpenAPI spec: %s", problems)
        payload = error_body(500, "Sandbox answer violates the OpenAPI spec: " + "; ".join(problems))
        return _Reply(500, payload), json.dumps(payload).encode("utf-8"), "application/json"

    def _upload_document(self, company: CompanyConfig, body: bytes, overflowed: bool) -> _Reply:
        limit = self.state.max_document_bytes()
        if overflowed:
            return _too_big(limit)
        boundary = form_boundary(self.headers.get("Content-Type", ""))
        if boundary is None:
            return _Reply(422, _missing_file("expected multipart/form-data with a 'file' field"))
        try:
            parts = parse_multipart(body, boundary)
        except MultipartError as exc:
            return _Reply(422, _missing_file(f"could not parse multipart body: {exc}"))
        part = next((p for p in parts if p.name == "file" and p.filename is not None), None)
        if part is None or part.filename is None:
            return _Reply(422, _missing_file("multipart field 'file' with a filename is required"))
        if len(part.data) > limit:
            return _too_big(limit)
        # Browsers on Windows may send a full path; Personio keeps the base name.
        filename = part.filename.replace("\\", "/").rsplit("/", 1)[-1]
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if extension not in MIMETYPES:
            return _Reply(
                422,
                field_error_body(
                    "file",
                    "errors.invalid-file-type",
                    extension=extension,
                    allowed=sorted(MIMETYPES),
                ),
            )
        record = self.state.record_document(
            company.company_id, filename, extension, MIMETYPES[extension], part.data, str(uuid.uuid4())
        )
        return _Reply(
            200,
            {
                "uuid": record["uuid"],
                "size": record["size"],
                "mimetype": record["mimetype"],
                "original_filename": record["original_filename"],
                "extension": record["extension"],
            },
        )

    def _create_application(self, company: CompanyConfig, body: bytes, overflowed: bool) -> _Reply:
        if overflowed:
            return _Reply(400, error_body(400, "Request body too large"))
        try:
            payload = json.loads(body) if body.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _Reply(400, error_body(400, f"Malformed JSON body: {exc}"))
        if not isinstance(payload, dict):
            return _Reply(400, error_body(400, "The request body must be a JSON object"))
        errors = validate_application(
            payload,
            company,
            lambda file_uuid: self.state.has_document(company.company_id, file_uuid),
            date.today(),
        )
        if errors:
            return _Reply(400, errors.body())
        record = self.state.commit_application(
            company.company_id, payload["job_position_id"], payload, filed_phase(payload, company)
        )
        if record is None:
            return _Reply(
                400,
                field_error_body(
                    "email",
                    "errors.applicant-already-exists",
                    job_position_id=payload["job_position_id"],
                ),
            )
        return _Reply(201, None)

    def handle_applications(self) -> None:
        self._api("applications")

    def handle_documents(self) -> None:
        self._api("documents")

    # ------------------------------------------------------------------ feed

    def handle_feed(self, domain: str | None = None) -> None:
        self._drain_body()
        if domain is None:
            domain = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        self._sleep_latency()
        snapshot = self.state.feed(domain)
        if snapshot is None:
            self._send(404, feeds.not_found_page(domain), feeds.HTML_CONTENT_TYPE)
            return
        mode = snapshot.company.feed_mode
        if mode == "xml":
            self._send_feed(snapshot)
        elif mode == "html":
            self._send(200, feeds.marketing_page(), feeds.HTML_CONTENT_TYPE)
        elif mode == "redirect":
            self._send(
                301,
                feeds.redirect_page(feeds.MARKETING_URL),
                feeds.HTML_CONTENT_TYPE,
                {"Location": feeds.MARKETING_URL},
            )
        elif mode == "not_found":
            self._send(404, feeds.not_found_page(domain), feeds.HTML_CONTENT_TYPE)
        elif mode == "truncated":
            self._send(200, feeds.truncate_feed(snapshot.body), feeds.XML_CONTENT_TYPE)
        else:  # server_error
            self._send(503, feeds.server_error_page(), feeds.HTML_CONTENT_TYPE)

    def _send_feed(self, snapshot: FeedSnapshot) -> None:
        language = self._query.get("language", feeds.DEFAULT_LANGUAGE)
        if language not in FEED_LANGUAGES:
            # Personio falls back to the career site's default language.
            language = feeds.DEFAULT_LANGUAGE
        headers = {
            "ETag": snapshot.etag,
            "Last-Modified": formatdate(snapshot.last_modified, usegmt=True),
            "Content-Language": language,
            "Cache-Control": "public, max-age=0, must-revalidate",
        }
        if self._not_modified(snapshot):
            self._send(304, b"", None, headers)
            return
        self._send(200, snapshot.body, feeds.XML_CONTENT_TYPE, headers)

    def _not_modified(self, snapshot: FeedSnapshot) -> bool:
        # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
            return "*" in tags or snapshot.etag in tags
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since:
            try:
                since = parsedate_to_datetime(if_modified_since).timestamp()
            except (TypeError, ValueError):
                return False
            return snapshot.last_modified <= since
        return False
