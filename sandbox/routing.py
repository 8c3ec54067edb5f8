"""Routes of the Personio stand-in, and the request handler that serves them.

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

import re

from sandbox.admin import AdminHandlers
from sandbox.api import ApiHandlers
from sandbox.framing import Handler, Route

APPLICATIONS_PATH = "/v1/recruiting/applications"
DOCUMENTS_PATH = "/v1/recruiting/applications/documents"


class SandboxRequestHandler(ApiHandlers, AdminHandlers):
    """Routes one request; a new instance per connection, reused for keep-alive."""

    def _route(self, path: str) -> Route | None:
        return match_route(path)


_ROUTES: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
    (
        re.compile(f"^{re.escape(APPLICATIONS_PATH)}$"),
        {"POST": SandboxRequestHandler.handle_applications},
    ),
    (
        re.compile(f"^{re.escape(DOCUMENTS_PATH)}$"),
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


def match_route(path: str) -> Route | None:
    """The handlers of ``path`` by method and its path parameters; None if no route matches."""
    for pattern, handlers in _ROUTES:
        match = pattern.match(path)
        if match:
            return handlers, match.groupdict()
    return None
