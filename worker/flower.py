"""Flower locked down: credentials never on its command line, every route but the health check behind them.

Flower 2.x checks credentials only in the views marked ``@authenticated``: its ``/metrics``,
``/healthcheck``, static files and the 404 page answer anyone. :func:`lock_down_flower` wraps
every handler Flower serves (its ``flower.urls.handlers`` list, which ``Flower`` reads when it
is built) so that each request but ``/healthcheck`` must carry the credentials first, and gives
Flower our credentials when none were configured for it — so ``personio-sync flower`` and a
plain ``celery -A worker flower`` behave the same (``worker.app`` calls this whenever Flower is
loaded in the process; Celery's command line imports it as a plugin before it loads our app).

The credentials come from ``PERSONIO_SYNC_FLOWER_BASIC_AUTH`` or the generated file
``<data dir>/flower-password`` (mode 0600) — never from argv, where ``ps`` shows them. Flower's own
``--basic-auth``/``FLOWER_BASIC_AUTH``/``--auth`` (OAuth) still win when an operator sets them.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from base64 import b64decode
from binascii import Error as BinasciiError
from typing import Any

from config import Settings, get_settings

log = logging.getLogger(__name__)

#: The one route that answers without credentials (load balancers, Docker, Kubernetes probes).
HEALTH_ROUTE = "/healthcheck"
_GUARD_FLAG = "_personio_sync_guarded"


def flower_basic_auth(settings: Settings) -> str:
    """``user:password`` for Flower: the setting, else a password generated once into a 0600 file."""
    if settings.flower_basic_auth:
        return settings.flower_basic_auth
    path = settings.data_dir / "flower-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process generated it just now
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(18) + "\n")
    return "admin:" + path.read_text().strip()


def basic_credentials(header: str) -> str | None:
    """``user:password`` from an ``Authorization: Basic …`` header, or None."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        return b64decode(value.strip(), validate=True).decode("utf-8")
    except (BinasciiError, UnicodeDecodeError, ValueError):
        return None


def credentials_match(given: str | None, allowed: list[str] | tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured ``user:password``."""
    if given is None:
        return False
    found = False
    for candidate in allowed:
        found |= hmac.compare_digest(candidate.encode(), given.encode())
    return found


def _authorized(handler: Any) -> bool:
    options = handler.application.options
    if options.basic_auth:
        return credentials_match(basic_credentials(handler.request.headers.get("Authorization", "")), list(options.basic_auth))
    if options.auth:  # OAuth: Flower's login flow and its cookie
        from flower.utils.authentication import authenticate
        from flower.views.auth import LogoutHandler

        if handler.request.path.rstrip("/").endswith(("/login", "/logout")) or isinstance(handler, LogoutHandler):
            return True
        user = handler.get_secure_cookie("user")
        if isinstance(user, bytes):
            user = user.decode()
        return bool(user and authenticate(options.auth, user))
    return False  # nothing configured: nothing but the health check answers


def _guarded(handler_class: type) -> type:
    if getattr(handler_class, _GUARD_FLAG, False):
        return handler_class

    def prepare(self: Any) -> Any:
        if not _authorized(self):
            self.clear()
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Basic realm="flower"')
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish("Access denied")
            return None
        return handler_class.prepare(self)  # type: ignore[attr-defined]

    guarded = type(handler_class.__name__, (handler_class,), {"prepare": prepare, _GUARD_FLAG: True})
    return guarded


def lock_down_flower(settings: Settings | None = None) -> None:
    """Guard every Flower route but ``/healthcheck``, and give Flower our credentials. Idempotent."""
    import flower.app
    import flower.urls
    from tornado.web import StaticFileHandler, URLSpec

    handlers = flower.urls.handlers
    for index, entry in enumerate(handlers):
        if isinstance(entry, URLSpec):
            if entry.regex.pattern.rstrip("$") != HEALTH_ROUTE:
                handlers[index] = URLSpec(entry.regex.pattern, _guarded(entry.handler_class), entry.kwargs, entry.name)
        elif entry[0] != HEALTH_ROUTE:
            handlers[index] = (entry[0], _guarded(entry[1]), *entry[2:])

    # /login without an OAuth provider is Flower's 404 page, built by flower.views.auth itself.
    import flower.views.auth

    flower.views.auth.NotFoundErrorHandler = _guarded(flower.views.auth.NotFoundErrorHandler)
    # Tornado serves static_path through its own handler, ahead of the list above.
    flower.urls.settings["static_handler_class"] = _guarded(flower.urls.settings.get("static_handler_class", StaticFileHandler))

    flower_class: Any = flower.app.Flower
    if getattr(flower_class, _GUARD_FLAG, False):
        return
    original_init = flower_class.__init__

    def __init__(self: Any, options: Any = None, *args: Any, **kwargs: Any) -> None:
        from worker.logs import configure_process_logging

        current = settings or get_settings()
        if options is not None and not options.basic_auth and not options.auth:
            options.basic_auth = [flower_basic_auth(current)]
        configure_process_logging(current)  # Flower's (tornado's) handlers: redacted, JSON if configured
        original_init(self, options, *args, **kwargs)

    flower_class.__init__ = __init__
    setattr(flower_class, _GUARD_FLAG, True)
