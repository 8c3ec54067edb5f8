"""HTTP server of the Personio stand-in (stdlib only, threaded, HTTP/1.1 keep-alive).

``SandboxServer`` is the public facade: it owns the state, the listening
socket and the serving thread. The routes it answers are listed in
``sandbox.routing``; ``python -m sandbox`` (``sandbox.cli``) runs it in the
foreground.

Modules of the package, one concern each:

* ``config`` / ``state`` / ``records`` / ``feeds`` - configuration, in-memory state and
  its records, jobs feed documents
* ``rules`` - Personio's validation rules and error bodies
* ``multipart`` - parsing of document uploads
* ``spec`` - loading Personio's OpenAPI description and the optional self-check
* ``framing`` - HTTP/1.1 request and answer plumbing
* ``api`` / ``admin`` - endpoint handlers; ``routing`` - the route table
* ``cli`` - the command line
"""

from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from sandbox.config import SandboxConfig, load_demo_config
from sandbox.routing import SandboxRequestHandler
from sandbox.spec import SpecGuard
from sandbox.state import SandboxState


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
