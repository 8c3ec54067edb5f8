"""HTTP/1.1 framing of the stand-in: dispatch, request bodies (chunked too), answers.

``FramedRequestHandler`` knows nothing of Personio: it turns each request into
a call of the handler the router finds for its path and method, reads bodies
so that keep-alive connections stay in sync even when a body is refused, and
writes answers. The endpoints are its subclasses (``sandbox.api``,
``sandbox.admin``), combined in ``sandbox.routing``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sandbox.rules import error_body

if TYPE_CHECKING:
    from sandbox.server import SandboxHTTPServer
    from sandbox.state import SandboxState

logger = logging.getLogger("sandbox")

MAX_JSON_BYTES = 10 * 1024 * 1024
_IDLE_TIMEOUT = 120.0

Handler = Callable[..., None]
# The handlers of one path by method, and the parameters taken from the path.
Route = tuple[dict[str, Handler], dict[str, str]]


class Drop(Exception):
    """Raised inside a handler to close the connection without answering."""


class BadRequest(Exception):
    """An admin request that cannot be understood."""


class BadFraming(Exception):
    """The request body's length cannot be determined (bad Content-Length/chunks)."""


class FramedRequestHandler(BaseHTTPRequestHandler):
    """One connection's requests (kept alive); the router supplies ``_route``."""

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

    def _route(self, path: str) -> Route | None:
        """The handlers for ``path`` and its parameters, or None when no route matches."""
        raise NotImplementedError

    # ------------------------------------------------------------ plumbing

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self._query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self._head_only = method == "HEAD"
        self._response_started = False
        try:
            route = self._route(split.path)
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
        except Drop:
            self.close_connection = True
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        except BadFraming as exc:
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
            raise BadFraming("invalid Content-Length") from exc
        if length < 0:
            raise BadFraming("negative Content-Length")
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
                raise BadFraming("invalid chunk size") from exc
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
        body, overflowed = self._read_body(MAX_JSON_BYTES)
        if overflowed:
            raise BadRequest("body too large")
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"malformed JSON body: {exc}") from exc
