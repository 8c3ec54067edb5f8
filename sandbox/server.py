"""HTTP server of the Personio stand-in (stdlib only, threaded, HTTP/1.1 keep-alive).

Routes
------
Personio recruiting API (``https://api.personio.de`` in production):

* ``POST /v1/recruiting/applications/documents`` - multipart upload, field ``file``
* ``POST /v1/recruiting/applications`` - JSON application

Both check, in this order: credentials (401), feature flags (403), the per
company rate limit (429), injected faults, then the request itself.

``SandboxConfig.latency`` delays API and feed answers, never admin answers.

Career-site jobs feed (``https://{domain}/xml`` in production), not rate limited:

* ``GET|HEAD /feeds/{domain}/xml?language=de``
* ``GET|HEAD /xml`` routed by the ``Host`` header

Admin / inspection API (JSON), for tests, the demo and benchmarks in other
processes:

* ``GET  /_sandbox/health``
* ``GET  /_sandbox/applications[?company_id=]``, ``GET /_sandbox/documents[?company_id=]``
* ``GET  /_sandbox/stats[?timestamps=1]``
* ``POST /_sandbox/reset`` (body ``{"restore_config": true}`` also restores the
  companies and settings the server started with)
* ``GET  /_sandbox/companies``; ``GET|PUT|PATCH|DELETE /_sandbox/companies/{company_id}``
* ``GET|POST|DELETE /_sandbox/faults`` - POST body
  ``{"company_id": 1000|null, "endpoint": "applications"|"documents"|null,
  "kind": "status"|"drop"|"drop_after_commit"|"delay_after_commit",
  "status": 500, "count": 1, "delay": 0}``
* ``GET|PATCH /_sandbox/settings`` - rate_limit, rate_window, lockout,
  shared_budget, send_retry_after, latency, max_document_bytes, validate_against_openapi
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox import feeds
from sandbox.config import (
    CompanyConfig,
    ConfigError,
    SandboxConfig,
    load_config,
    load_demo_config,
    parse_latency,
    parse_rate_limit,
)
from sandbox.state import FeedSnapshot, SandboxState

logger = logging.getLogger("sandbox")

APPLICATIONS_PATH = "/v1/recruiting/applications"
DOCUMENTS_PATH = "/v1/recruiting/applications/documents"

# Personio's list of accepted upload types (personio-api.md §1a), with the
# MIME type the sandbox reports as "detected".
MIMETYPES = {
    "pdf": "application/pdf",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odt": "application/vnd.oasis.opendocument.text",
    "7z": "application/x-7z-compressed",
    "gz": "application/gzip",
    "rar": "application/vnd.rar",
    "zip": "application/zip",
    "bmp": "image/bmp",
    "gif": "image/gif",
    "jpg": "image/jpeg",
    "png": "image/png",
    "tif": "image/tiff",
    "csv": "text/csv",
    "txt": "text/plain",
    "rtf": "application/rtf",
    "mp4": "video/mp4",
    "3gp": "video/3gpp",
    "mov": "video/quicktime",
    "avi": "video/x-msvideo",
    "wmv": "video/x-ms-wmv",
}
SYSTEM_PHASES = ("unassigned", "rejected", "withdrawn", "offer", "accepted")
FILE_CATEGORIES = ("cv", "cover-letter", "employment-reference", "certificate", "work-sample", "other")
SYSTEM_ATTRIBUTES = ("birthday", "gender", "location", "phone", "available_from", "salary_expectations")
GENDER_OPTIONS = ("male", "female", "diverse", "undefined")
DATE_ATTRIBUTES = ("birthday", "available_from")
FIELD_ERROR_TYPE = "com.personio.recruiting.publicapi.validation.FieldError"

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Bodies beyond this are never buffered: uploads are only ever as large as
# max_document_bytes plus a little multipart framing.
_MULTIPART_SLACK = 64 * 1024
_MAX_JSON_BYTES = 10 * 1024 * 1024
_IDLE_TIMEOUT = 120.0


# ---------------------------------------------------------------- error bodies


class FieldErrors:
    """Collects Personio field errors; one entry per field, reasons merged."""

    def __init__(self) -> None:
        self._by_field: dict[str, list[dict[str, Any]]] = {}

    def add(self, field: str, reason: str, **context: Any) -> None:
        item: dict[str, Any] = {"reason": reason}
        if context:
            item["context"] = context
        self._by_field.setdefault(field, []).append(item)

    def __bool__(self) -> bool:
        return bool(self._by_field)

    def body(self) -> dict[str, Any]:
        return {
            "errors": [
                {"field": field, "type": FIELD_ERROR_TYPE, "errors": reasons}
                for field, reasons in self._by_field.items()
            ]
        }


def generic_error(status: int, detail: str) -> dict[str, Any]:
    """The spec's generic error item: ``{id, status, title, detail}``."""
    return {
        "id": str(uuid.uuid4()),
        "status": str(status),
        "title": HTTPStatus(status).phrase,
        "detail": detail,
    }


def error_body(status: int, detail: str) -> dict[str, Any]:
    return {"errors": [generic_error(status, detail)]}


def field_error_body(field: str, reason: str, **context: Any) -> dict[str, Any]:
    errors = FieldErrors()
    errors.add(field, reason, **context)
    return errors.body()


# ---------------------------------------------------------- application rules


def validate_application(
    payload: dict[str, Any],
    company: CompanyConfig,
    has_document: Callable[[str], bool],
    today: date,
) -> FieldErrors:
    """Apply Personio's documented validation rules; all field errors at once."""
    errors = FieldErrors()
    for name in ("first_name", "last_name"):
        _check_name(payload, name, errors)
    _check_email(payload, errors)
    _check_job(payload, company, errors)
    _check_channel(payload, company, errors)
    for name in ("external_posting_id", "message"):
        if payload.get(name) is not None and not isinstance(payload[name], str):
            errors.add(name, "errors.attribute-validation.invalid-type", expected="string")
    _check_application_date(payload, today, errors)
    _check_phase(payload, errors)
    _check_tags(payload, errors)
    _check_files(payload, has_document, errors)
    _check_attributes(payload, company, errors)
    return errors


def _check_name(payload: dict[str, Any], name: str, errors: FieldErrors) -> None:
    value = payload.get(name)
    if value is None:
        errors.add(name, "errors.attribute-validation.required-attribute")
    elif not isinstance(value, str):
        errors.add(name, "errors.attribute-validation.invalid-type", expected="string")
    elif not value.strip():
        errors.add(name, "errors.attribute-validation.required-attribute")


def _check_email(payload: dict[str, Any], errors: FieldErrors) -> None:
    value = payload.get("email")
    if value is None or (isinstance(value, str) and not value.strip()):
        errors.add("email", "errors.attribute-validation.required-attribute")
    elif not isinstance(value, str):
        errors.add("email", "errors.attribute-validation.invalid-type", expected="string")
    elif not _EMAIL_RE.match(value.strip()):
        errors.add("email", "errors.attribute-validation.invalid-email-format")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_job(payload: dict[str, Any], company: CompanyConfig, errors: FieldErrors) -> None:
    value = payload.get("job_position_id")
    if value is None:
        errors.add("job_position_id", "errors.attribute-validation.required-attribute")
    elif not _is_int(value):
        errors.add("job_position_id", "errors.attribute-validation.invalid-type", expected="integer")
    else:
        job = company.job(value)
        # Personio answers an unknown id like an unpublished one.
        if job is None or not job.published:
            errors.add("job_position_id", "errors.job-position.not-published", job_position_id=value)


def _check_channel(payload: dict[str, Any], company: CompanyConfig, errors: FieldErrors) -> None:
    value = payload.get("recruiting_channel_id")
    if value is None:
        return
    if not _is_int(value):
        errors.add(
            "recruiting_channel_id", "errors.attribute-validation.invalid-type", expected="integer"
        )
    elif value not in company.channel_ids:
        errors.add(
            "recruiting_channel_id",
            "errors.posting-validation.channel-not-found",
            recruiting_channel_id=value,
        )


def _parse_local_date(value: Any) -> date | None:
    if not isinstance(value, str) or not _DATE_RE.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _check_application_date(payload: dict[str, Any], today: date, errors: FieldErrors) -> None:
    value = payload.get("application_date")
    if value is None:
        return
    parsed = _parse_local_date(value)
    if parsed is None:
        errors.add("application_date", "errors.attribute-validation.invalid-date-format")
    elif parsed > today:
        errors.add("application_date", "errors.date-validation.date-in-the-future")


def _check_phase(payload: dict[str, Any], errors: FieldErrors) -> None:
    phase = payload.get("phase")
    if phase is None:
        return
    if not isinstance(phase, dict):
        errors.add("phase", "errors.attribute-validation.invalid-type", expected="object")
        return
    if phase.get("type") is None or phase.get("id") is None:
        errors.add("phase", "errors.attribute-validation.required-attribute")
    elif phase["type"] == "system":
        if phase["id"] not in SYSTEM_PHASES:
            errors.add("phase", "errors.phase-validation.invalid-system-phase", id=phase["id"])
    elif phase["type"] != "custom":
        errors.add("phase", "errors.phase-validation.invalid-system-phase", type=phase["type"])
    # Unknown custom phases are accepted: Personio files them under "unassigned".


def _check_tags(payload: dict[str, Any], errors: FieldErrors) -> None:
    tags = payload.get("tags")
    if tags is None:
        return
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        errors.add("tags", "errors.attribute-validation.invalid-type", expected="array of strings")


def _check_files(
    payload: dict[str, Any], has_document: Callable[[str], bool], errors: FieldErrors
) -> None:
    files = payload.get("files")
    if files is None:
        return
    if not isinstance(files, list):
        errors.add("files", "errors.attribute-validation.invalid-type", expected="array")
        return
    for index, item in enumerate(files):
        if not isinstance(item, dict):
            errors.add("files", "errors.attribute-validation.invalid-type", index=index)
            continue
        missing = [k for k in ("uuid", "original_filename", "category") if not item.get(k)]
        for key in missing:
            errors.add("files", "errors.attribute-validation.required-attribute", index=index, attribute=key)
        category = item.get("category")
        if category and category not in FILE_CATEGORIES:
            errors.add(
                "files", "errors.file-validation.unknown-file-category", index=index, category=category
            )
        file_uuid = item.get("uuid")
        if file_uuid and not (isinstance(file_uuid, str) and has_document(file_uuid)):
            errors.add("files", "errors.file-validation.file-not-exists", index=index, uuid=file_uuid)


def _check_attributes(payload: dict[str, Any], company: CompanyConfig, errors: FieldErrors) -> None:
    attributes = payload.get("attributes")
    if attributes is None:
        return
    if not isinstance(attributes, list):
        errors.add("attributes", "errors.attribute-validation.invalid-type", expected="array")
        return
    for index, item in enumerate(attributes):
        if not isinstance(item, dict) or item.get("id") is None or "value" not in item:
            errors.add("attributes", "errors.attribute-validation.required-attribute", index=index)
            continue
        attribute_id, value = item["id"], item["value"]
        if not isinstance(attribute_id, str):
            errors.add("attributes", "errors.attribute-validation.invalid-type", index=index)
        elif attribute_id not in SYSTEM_ATTRIBUTES and attribute_id not in company.custom_attributes:
            errors.add(attribute_id, "errors.attribute-validation.unknown")
        elif not isinstance(value, str):
            errors.add(attribute_id, "errors.attribute-validation.invalid-type", expected="string")
        elif attribute_id == "gender" and value not in GENDER_OPTIONS:
            errors.add(
                attribute_id,
                "errors.attribute-validation.unknown-attribute-option",
                options=list(GENDER_OPTIONS),
            )
        elif attribute_id in DATE_ATTRIBUTES and _parse_local_date(value) is None:
            errors.add(attribute_id, "errors.attribute-validation.invalid-date-format")


# ------------------------------------------------------------------ multipart


class MultipartError(ValueError):
    """The multipart body cannot be parsed."""


@dataclass
class FormPart:
    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes


def parse_multipart(body: bytes, boundary: str) -> list[FormPart]:
    """Split a multipart/form-data body into its parts.

    The stdlib ``cgi`` module is deprecated, and uploads are buffered anyway,
    so a small splitter over the whole body is all that is needed.
    """
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 3:
        raise MultipartError("no multipart parts found")
    parts: list[FormPart] = []
    for section in sections[1:]:
        if section.startswith(b"--"):
            return parts
        head, separator, data = section.partition(b"\r\n\r\n")
        if not separator:
            raise MultipartError("part without header terminator")
        headers = HeaderParser().parsestr(head.lstrip(b"\r\n").decode("utf-8", "replace"))
        parts.append(
            FormPart(
                name=_disposition_param(headers, "name"),
                filename=headers.get_filename(),
                content_type=headers.get_content_type() if "content-type" in headers else None,
                data=data,
            )
        )
    raise MultipartError("missing closing boundary")


def _disposition_param(headers: Message, name: str) -> str | None:
    value = headers.get_param(name, header="content-disposition")
    if value is None:
        return None
    return collapse_rfc2231_value(value)


def _boundary(content_type: str) -> str | None:
    message = Message()
    message["content-type"] = content_type
    if message.get_content_type() != "multipart/form-data":
        return None
    boundary = message.get_param("boundary")
    return collapse_rfc2231_value(boundary) if boundary else None


# ------------------------------------------------------------ OpenAPI guard


class SpecGuard:
    """Optional self-check of API answers against Personio's OpenAPI spec.

    Needs openapi-core (a test dependency), imported lazily; when it or the
    spec is missing the guard logs once and lets every answer through.
    """

    def __init__(self) -> None:
        self._openapi: Any = None
        self._lock = threading.Lock()
        self._unavailable = False

    @staticmethod
    def spec_path() -> Path:
        # Personio's OpenAPI file ships with the package (an unchanged copy of
        # shared/personio/personio-recruiting-api.yaml); the env var can point elsewhere.
        env = os.environ.get("PERSONIO_OPENAPI_SPEC")
        return Path(env) if env else Path(__file__).resolve().parent / "data" / "personio-recruiting-api.yaml"

    def _load(self) -> Any:
        with self._lock:
            if self._openapi is None and not self._unavailable:
                try:
                    import yaml
                    from openapi_core import OpenAPI

                    spec = yaml.safe_load(self.spec_path().read_text(encoding="utf-8"))
                    # The spec's extension enum says "ptt" where it means "ppt".
                    enum = spec["components"]["schemas"]["uploaded_document"]["properties"][
                        "extension"
                    ]["enum"]
                    enum.append("ppt")
                    self._openapi = OpenAPI.from_dict(spec)
                except Exception:  # noqa: BLE001 - any failure just disables the guard
                    logger.warning("OpenAPI self-validation disabled", exc_info=True)
                    self._unavailable = True
            return self._openapi

    def violations(
        self,
        method: str,
        path: str,
        request_headers: dict[str, str],
        request_body: bytes,
        status: int,
        response_headers: dict[str, str],
        response_body: bytes,
    ) -> list[str]:
        openapi = self._load()
        if openapi is None:
            return []
        import requests
        from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

        prepared = requests.Request(
            method, "https://api.personio.de" + path, headers=request_headers, data=request_body
        ).prepare()
        response = requests.Response()
        response.status_code = status
        response._content = response_body
        response.headers.update(response_headers)
        errors = openapi.iter_response_errors(
            RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response)
        )
        return [f"{type(e).__name__}: {e}" for e in errors]


# --------------------------------------------------------------------- server


class SandboxHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its state and can close idle keep-alives."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        self.state = state
        self.spec_guard = SpecGuard()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SandboxRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Drop(Exception):
    """Raised inside a handler to close the connection without answering."""


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Routes one request; a new instance per connection, reused for keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "PersonioSandbox/1.0"
    timeout = _IDLE_TIMEOUT
    # Headers and body go out in two writes; with Nagle on, the second waits
    # for the client's delayed ACK (~40 ms per request on keep-alive).
    disable_nagle_algorithm = True
    server: SandboxHTTPServer
    # Per-request values, set by _dispatch before any handler runs.
    _query: dict[str, str]
    _head_only: bool
    _response_started: bool

    # The stdlib calls do_<METHOD>; all of them go through one dispatcher.
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s - " + format, self.address_string(), *args)

    @property
    def state(self) -> SandboxState:
        return self.server.state

    # ------------------------------------------------------------ plumbing

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self._query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self._head_only = method == "HEAD"
        self._response_started = False
        try:
            route = _match_route(split.path)
            if route is None:
                self._drain_body()
                self._send_json(404, {"error": "not_found", "path": split.path})
                return
            handlers, params = route
            handler = handlers.get(method)
            if handler is None:
                self._drain_body()
                allow = ", ".join(sorted(handlers))
                self._send_json(405, {"error": "method_not_allowed", "allow": allow}, {"Allow": allow})
                return
            handler(self, **params)
        except _Drop:
            self.close_connection = True
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        except _BadFraming as exc:
            # The body length is unknown, so the connection cannot be reused.
            self.close_connection = True
            if not self._response_started:
                self._send_json(400, {"error": f"malformed request framing: {exc}"})
        except Exception:
            logger.exception("sandbox handler crashed on %s %s", method, self.path)
            self.close_connection = True
            if not self._response_started:
                self._send_json(500, error_body(500, "Sandbox internal error"))

    def _read_body(self, cap: int) -> tuple[bytes, bool]:
        """Read the whole request body; keep at most ``cap`` bytes.

        Returns (body, overflowed). The rest is drained so that the keep-alive
        connection stays in sync even when the body is refused.
        """
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(cap)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise _BadFraming("invalid Content-Length") from exc
        if length < 0:
            raise _BadFraming("negative Content-Length")
        kept = self.rfile.read(min(length, cap + 1)) if length else b""
        remaining = length - len(kept)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                raise ConnectionError("client closed during body")
            remaining -= len(chunk)
        return kept[:cap], length > cap

    def _read_chunked(self, cap: int) -> tuple[bytes, bool]:
        kept = bytearray()
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            if not size_line:
                raise ConnectionError("client closed during chunked body")
            try:
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            except ValueError as exc:
                raise _BadFraming("invalid chunk size") from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(kept), total > cap
            data = self.rfile.read(size)
            self.rfile.readline(8)
            total += len(data)
            if len(kept) < cap:
                kept.extend(data[: cap - len(kept)])

    def _drain_body(self) -> None:
        self._read_body(0)

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._response_started = True
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and not self._head_only and status != 304:
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json", headers)

    def _json_body(self) -> Any:
        body, overflowed = self._read_body(_MAX_JSON_BYTES)
        if overflowed:
            raise _BadRequest("body too large")
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _BadRequest(f"malformed JSON body: {exc}") from exc

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
            else _MAX_JSON_BYTES
        )
        body, overflowed = self._read_body(cap)
        company = self._authenticate()
        if company is None:
            reply = _Reply(401, error_body(401, "The API token and/or company id was not recognized."))
            self._finish_api(None, endpoint, body, reply)
            return
        reply = self._gatekeep(company, endpoint)
        if reply is not None:
            self._finish_api(company, endpoint, body, reply)
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

    def _drop(self, company: CompanyConfig, endpoint: str) -> None:
        self.state.record_response(company.company_id, endpoint, "dropped")
        self._sleep_latency()
        raise _Drop()

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
        boundary = _boundary(self.headers.get("Content-Type", ""))
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
        record = self.state.commit_application(company.company_id, payload["job_position_id"], payload)
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
        if language not in feeds.FEED_LANGUAGES:
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

    # ----------------------------------------------------------------- admin

    def _admin_company_id(self) -> int | None:
        raw = self._query.get("company_id")
        if raw is None:
            return None
        if not raw.isdigit():
            raise _BadRequest("company_id must be an integer")
        return int(raw)

    def _admin(self, action: Callable[[], tuple[int, Any]]) -> None:
        try:
            status, payload = action()
        except _BadRequest as exc:
            status, payload = 400, {"error": str(exc)}
        except ConfigError as exc:
            status, payload = 400, {"error": str(exc)}
        self._send_json(status, payload)

    def admin_health(self) -> None:
        self._drain_body()
        self._send_json(200, {"status": "ok"})

    def admin_applications(self) -> None:
        self._drain_body()
        self._admin(lambda: (200, self.state.applications(self._admin_company_id())))

    def admin_documents(self) -> None:
        self._drain_body()
        self._admin(lambda: (200, self.state.documents(self._admin_company_id())))

    def admin_stats(self) -> None:
        self._drain_body()
        include = self._query.get("timestamps", "") in ("1", "true", "yes")
        self._send_json(200, self.state.stats(include_timestamps=include))

    def admin_reset(self) -> None:
        def action() -> tuple[int, Any]:
            payload = self._json_body()
            restore = bool(payload.get("restore_config")) if isinstance(payload, dict) else False
            self.state.reset(restore_config=restore)
            return 200, {"status": "reset", "restore_config": restore}

        self._admin(action)

    def admin_companies(self) -> None:
        self._drain_body()
        self._send_json(200, [c.to_dict() for c in self.state.companies()])

    def admin_company(self, company_id: str) -> None:
        cid = int(company_id)
        method = self.command

        def action() -> tuple[int, Any]:
            if method == "GET":
                self._drain_body()
                company = self.state.company(cid)
                return (200, company.to_dict()) if company else (404, {"error": "unknown company"})
            if method == "DELETE":
                self._drain_body()
                removed = self.state.remove_company(cid)
                return (200, {"removed": cid}) if removed else (404, {"error": "unknown company"})
            payload = self._json_body()
            if not isinstance(payload, dict):
                raise _BadRequest("body must be a JSON object")
            if method == "PATCH":
                try:
                    return 200, self.state.patch_company(cid, payload).to_dict()
                except KeyError:
                    return 404, {"error": "unknown company"}
            if payload.setdefault("company_id", cid) != cid:
                raise _BadRequest("company_id in body does not match the URL")
            company = CompanyConfig.from_dict(payload)
            created = self.state.upsert_company(company)
            return (201 if created else 200), company.to_dict()

        self._admin(action)

    def admin_faults(self) -> None:
        method = self.command

        def action() -> tuple[int, Any]:
            if method == "GET":
                self._drain_body()
                return 200, self.state.faults()
            if method == "DELETE":
                self._drain_body()
                self.state.clear_faults()
                return 200, []
            payload = self._json_body()
            if not isinstance(payload, dict):
                raise _BadRequest("body must be a JSON object")
            allowed = {"company_id", "status", "count", "endpoint", "kind", "delay"}
            unknown = set(payload) - allowed
            if unknown:
                raise _BadRequest(f"unknown fault key(s): {sorted(unknown)}")
            kind = payload.get("kind", "status")
            fault = self.state.inject_fault(
                company_id=payload.get("company_id"),
                status=payload.get("status", 500 if kind == "status" else None),
                count=payload.get("count", 1),
                endpoint=payload.get("endpoint"),
                kind=kind,
                delay=float(payload.get("delay", 0.0)),
            )
            return 201, fault

        self._admin(action)

    def admin_settings(self) -> None:
        method = self.command

        def action() -> tuple[int, Any]:
            if method == "GET":
                self._drain_body()
            else:
                payload = self._json_body()
                if not isinstance(payload, dict):
                    raise _BadRequest("body must be a JSON object")
                self.state.update_settings(**payload)
            settings = self.state.settings.to_dict()
            settings.pop("companies")
            return 200, settings

        self._admin(action)


class _BadRequest(Exception):
    """An admin request that cannot be understood."""


class _BadFraming(Exception):
    """The request body's length cannot be determined (bad Content-Length/chunks)."""


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


_Handler = Callable[..., None]
_ROUTES: list[tuple[re.Pattern[str], dict[str, _Handler]]] = [
    (re.compile(r"^/v1/recruiting/applications$"), {"POST": SandboxRequestHandler.handle_applications}),
    (
        re.compile(r"^/v1/recruiting/applications/documents$"),
        {"POST": SandboxRequestHandler.handle_documents},
    ),
    (
        re.compile(r"^/feeds/(?P<domain>[^/]+)/xml$"),
        {"GET": SandboxRequestHandler.handle_feed, "HEAD": SandboxRequestHandler.handle_feed},
    ),
    (re.compile(r"^/xml$"), {"GET": SandboxRequestHandler.handle_feed, "HEAD": SandboxRequestHandler.handle_feed}),
    (re.compile(r"^/_sandbox/health$"), {"GET": SandboxRequestHandler.admin_health}),
    (re.compile(r"^/_sandbox/applications$"), {"GET": SandboxRequestHandler.admin_applications}),
    (re.compile(r"^/_sandbox/documents$"), {"GET": SandboxRequestHandler.admin_documents}),
    (re.compile(r"^/_sandbox/stats$"), {"GET": SandboxRequestHandler.admin_stats}),
    (re.compile(r"^/_sandbox/reset$"), {"POST": SandboxRequestHandler.admin_reset}),
    (re.compile(r"^/_sandbox/companies$"), {"GET": SandboxRequestHandler.admin_companies}),
    (
        re.compile(r"^/_sandbox/companies/(?P<company_id>\d+)$"),
        {m: SandboxRequestHandler.admin_company for m in ("GET", "PUT", "PATCH", "DELETE")},
    ),
    (
        re.compile(r"^/_sandbox/faults$"),
        {m: SandboxRequestHandler.admin_faults for m in ("GET", "POST", "DELETE")},
    ),
    (
        re.compile(r"^/_sandbox/settings$"),
        {m: SandboxRequestHandler.admin_settings for m in ("GET", "PATCH")},
    ),
]


def _match_route(path: str) -> tuple[dict[str, _Handler], dict[str, str]] | None:
    for pattern, handlers in _ROUTES:
        match = pattern.match(path)
        if match:
            return handlers, match.groupdict()
    return None


# ------------------------------------------------------------- public facade


class SandboxServer:
    """A running (or ready to run) Personio stand-in."""

    def __init__(self, config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = SandboxState(config)
        self._httpd = SandboxHTTPServer((host, port), self.state)
        self.host = host
        self.port: int = self._httpd.server_address[1]
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        if ":" in url_host:
            url_host = f"[{url_host}]"
        self.url = f"http://{url_host}:{self.port}"
        self.feed_url_template = f"{self.url}/feeds/{{domain}}/xml"
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def open_connections(self) -> int:
        """Client connections currently open (keep-alive ones included)."""
        with self._httpd._connections_lock:
            return len(self._httpd._connections)

    def feed_url(self, domain: str, language: str | None = None) -> str:
        url = self.feed_url_template.format(domain=domain)
        return f"{url}?language={language}" if language else url

    def start(self) -> SandboxServer:
        """Serve in a daemon background thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"personio-sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until KeyboardInterrupt."""
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving and close all connections (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._httpd.close_connections()
            self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> SandboxServer:
    """Start a sandbox in a background thread (demo config if none is given)."""
    return SandboxServer(config if config is not None else load_demo_config(), host, port).start()


# ------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Run the Personio recruiting API / jobs feed stand-in in the foreground.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--config", help="JSON config file (default: bundled demo fixture)")
    parser.add_argument("--rate-limit", help="requests per window, e.g. 20/60s")
    parser.add_argument("--lockout", type=float, help="seconds of 429 after exceeding the limit")
    parser.add_argument("--latency", help="uniform delay per API answer in seconds, e.g. 0.05-0.2")
    parser.add_argument("--per-endpoint-budget", action="store_true", help="one budget per endpoint")
    parser.add_argument("--retry-after", action="store_true", help="send Retry-After on 429")
    parser.add_argument("--max-document-bytes", type=int)
    parser.add_argument("--validate-openapi", action="store_true", help="self-check answers")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    config = load_config(args.config) if args.config else load_demo_config()
    changes: dict[str, Any] = {}
    if args.rate_limit:
        changes["rate_limit"], changes["rate_window"] = parse_rate_limit(args.rate_limit)
    if args.lockout is not None:
        changes["lockout"] = args.lockout
    if args.latency:
        changes["latency"] = parse_latency(args.latency)
    if args.per_endpoint_budget:
        changes["shared_budget"] = False
    if args.retry_after:
        changes["send_retry_after"] = True
    if args.max_document_bytes is not None:
        changes["max_document_bytes"] = args.max_document_bytes
    if args.validate_openapi:
        changes["validate_against_openapi"] = True
    return config.with_settings(changes)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sandbox`` (also usable from the project CLI)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except (ConfigError, OSError, json.JSONDecodeError) as exc:
        print(f"sandbox: invalid configuration: {exc}", flush=True)
        return 2
    server = SandboxServer(config, args.host, args.port)
    _print_banner(server, config)
    if threading.current_thread() is threading.main_thread():
        # Let `kill`/subprocess.terminate() stop it as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    server.serve_forever()
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_banner(server: SandboxServer, config: SandboxConfig) -> None:
    lines = [
        f"Personio sandbox listening on {server.url}",
        f"  API base URL:       {server.url}",
        f"  Feed URL template:  {server.feed_url_template}",
        f"  Admin API:          {server.url}/_sandbox/",
        f"  Rate limit:         {config.rate_limit}/{config.rate_window:g}s per company "
        f"({'shared' if config.shared_budget else 'per endpoint'}), lockout {config.lockout:g}s",
        "  Credentials:",
    ]
    for company in config.companies:
        jobs = ", ".join(str(job.id) for job in company.jobs if job.published)
        lines.append(
            f"    company_id={company.company_id} access_token={company.access_token} "
            f"domain={company.domain} jobs=[{jobs}] channels={company.channel_ids}"
        )
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
