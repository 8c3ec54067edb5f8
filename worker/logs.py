"""Logs for operators: JSON lines on request (``PERSONIO_SYNC_LOG_FORMAT=json``) and redaction always.

* :class:`RedactionFilter` sits on every handler of the worker, beat, Flower and the CLI, so it
  sees every record — ours and any library's — and masks access tokens and other secrets
  (``Bearer …``, ``token=…``, Fernet tokens, passwords in URLs, the configured secrets
  themselves), email addresses, phone numbers and long base64 runs (document bytes). Fields a
  record carries as ``extra`` under candidate-data names (``first_name``, ``email``, …) are
  dropped. Names cannot be recognised in free text; our code never logs them (see the README).
* :class:`JsonFormatter` writes one JSON object per line with the time, level, logger, message
  and, where known, ``task_id``, ``task_name``, ``request_id``, ``account_id``, ``upload_id``,
  ``connection_id``, ``outcome``, ``reason_code`` and ``duration`` (seconds).

Wired through Celery's logging signals (``after_setup_logger``/``after_setup_task_logger``), so
``celery -A worker …`` gets the same as ``personio-sync worker``; the task fields come from
``task_prerun``/``task_postrun``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from config import Settings

#: Record attributes that would carry candidate data if a library or a future change put them there.
SENSITIVE_FIELDS = frozenset({
    "first_name", "last_name", "full_name", "email", "phone", "candidate", "documents", "content",
    "content_base64", "access_token", "token", "password", "authorization", "secret",
})
#: Fields copied into JSON lines when a record or the running task knows them.
CONTEXT_FIELDS = ("task_id", "task_name", "request_id", "account_id", "upload_id", "connection_id", "company_id",
                  "outcome", "reason_code", "duration")
MASK = "[redacted]"

_KEYED_SECRET = re.compile(
    r"(?i)\b(token|access[_-]?token|api[_-]?key|authorization|password|passwd|secret|client[_-]?secret)"
    r"(['\"]?\s*[:=]\s*['\"]?)(?!\[redacted\]|(?:bearer|basic)\s)([^\s\"',;}\]]+)"
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\[redacted\]|realm)([A-Za-z0-9._~+/=-]{6,})")
_FERNET = re.compile(r"gAAAAA[A-Za-z0-9_\-]{20,}={0,2}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*\.(?:[^\W\d_]{2,}|xn--[\w-]+)\b")
_PHONE = re.compile(
    r"(?<![\w+])\+\d[\d\s()./-]{6,}\d"  # international: +49 30 1234567
    r"|(?<![\w.:/-])\(?0\d{2,5}\)?[\s/-]\d{3,}(?:[\s-]\d{2,})*(?![\w-])"  # national: 030 1234567, (030) 123-45
)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{120,}={0,2}")

_known_secrets: set[str] = set()
_task_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("personio_sync_task_context", default=None)


def register_secrets(values: Iterable[str | None]) -> None:
    """Mask these exact strings wherever they appear (configured keys and passwords)."""
    for value in values:
        if value and len(value) >= 6:
            _known_secrets.add(value)


def redact(text: str) -> str:
    """``text`` with secrets, email addresses, phone numbers and document bytes masked."""
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _FERNET.sub(MASK, text)
    text = _KEYED_SECRET.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    text = _AUTH_SCHEME.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    text = _EMAIL.sub("[email]", text)
    text = _PHONE.sub("[phone]", text)
    text = _BASE64_RUN.sub(lambda m: f"[{len(m.group(0))} bytes of base64]", text)
    return text


class RedactionFilter(logging.Filter):
    """Masks what must never be logged, in the message, its arguments, the exception and extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_personio_sync_redacted", False):
            return True
        if isinstance(record.args, dict) and "runtime" in record.args and "duration" not in record.__dict__:
            record.duration = record.args["runtime"]  # Celery's "Task … succeeded in 0.1s"
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is still logged, redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in SENSITIVE_FIELDS & record.__dict__.keys():
            setattr(record, key, MASK)
        record._personio_sync_redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            # Redacted already by the handler's filter; a handler added without it is still safe.
            "message": record.getMessage() if getattr(record, "_personio_sync_redacted", False) else redact(record.getMessage()),
            "process": record.process,
        }
        context = _task_context.get() or {}
        for key in CONTEXT_FIELDS:
            value = record.__dict__.get(key, context.get(key))
            if value is not None and value != "???":  # Celery's placeholder outside a task
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def apply_to_handlers(handlers: Iterable[logging.Handler], log_format: str) -> None:
    """Redaction on every handler; the JSON format when asked (else the handler keeps its own)."""
    for handler in handlers:
        if not any(isinstance(f, RedactionFilter) for f in handler.filters):
            handler.addFilter(RedactionFilter())
        if log_format == "json" and not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())


def configure_process_logging(settings: Settings, logger: logging.Logger | None = None) -> None:
    """Redaction (and JSON) for the handlers of ``logger`` (default: the root logger)."""
    register_secrets([*settings.secret_keys, settings.flower_basic_auth, settings.metrics_basic_auth,
                      *(a.split(":", 1)[1] for a in (settings.flower_basic_auth, settings.metrics_basic_auth) if a)])
    target = logger or logging.getLogger()
    apply_to_handlers(target.handlers, settings.log_format)


def setup_cli_logging(settings: Settings) -> None:
    """The CLI's own records: warnings and errors to stderr (as before: the commands print their
    results themselves), redacted, as JSON when configured; DEBUG shows everything."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING)
    configure_process_logging(settings, root)


def task_fields(task_name: str, args: Any) -> dict[str, Any]:
    """What a task's arguments say about its upload (ids only, never candidate data)."""
    from config.names import DISPATCH_CONNECTION_TASK, PROCESS_UPLOAD_TASK, UPLOAD_TASK

    fields: dict[str, Any] = {}
    args = list(args or ())
    if task_name == UPLOAD_TASK and args and isinstance(args[0], dict):
        from services.schemas import usable_request_id

        request_id = usable_request_id(args[0].get("request_id"))
        if request_id is not None:
            fields["request_id"] = request_id
        account = args[0].get("account_id")
        if isinstance(account, str) and 0 < len(account) <= 128 and account.isprintable():
            fields["account_id"] = redact(account)
    elif task_name == PROCESS_UPLOAD_TASK and args and isinstance(args[0], int):
        fields["upload_id"] = args[0]
    elif task_name == DISPATCH_CONNECTION_TASK and args and isinstance(args[0], int):
        fields["connection_id"] = args[0]
    return fields


def install_celery_logging(settings: Settings) -> None:
    """Connect Celery's logging and task signals (the latest call's settings apply)."""
    from celery import signals

    def after_setup(logger: logging.Logger | None = None, **kwargs: Any) -> None:
        configure_process_logging(settings, logger)

    def prerun(task_id: str | None = None, task: Any = None, args: Any = None, **kwargs: Any) -> None:
        name = getattr(task, "name", None) or ""
        _task_context.set({"task_id": task_id, "task_name": name, **task_fields(name, args)})

    def postrun(**kwargs: Any) -> None:
        _task_context.set(None)

    receivers = (
        (signals.after_setup_logger, after_setup, "personio_sync.logs.setup"),
        (signals.after_setup_task_logger, after_setup, "personio_sync.logs.setup_task"),
        (signals.task_prerun, prerun, "personio_sync.logs.prerun"),
        (signals.task_postrun, postrun, "personio_sync.logs.postrun"),
    )
    for signal, receiver, uid in receivers:
        # A signal keeps the first receiver of a dispatch_uid: replace it, so the settings of the
        # app built last (a second app in one process, tests) are the ones that apply.
        signal.disconnect(dispatch_uid=uid)
        signal.connect(receiver, weak=False, dispatch_uid=uid)
