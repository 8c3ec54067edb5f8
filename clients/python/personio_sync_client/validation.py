"""Cheap local checks of what a producer sends, so a mistake fails in the caller with a clear error.

Only what is required and the JSON shape are checked here; the full contract (email rules,
document types and sizes, attributes, ...) has one owner, the worker, which answers every
request that passes these checks with an outcome on its events stream. The errors name fields
by their path and never repeat the value sent (it may be candidate data).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from personio_sync_client.contract import ID_PATTERN

PRIORITIES = ("interactive", "backfill")
DOCUMENT_SOURCES = ("content_base64", "url")
_ID = re.compile(ID_PATTERN)
# Ids built as "{backfill_id}:{index}" must stay within the 128 characters of a request_id.
BACKFILL_ID_MAX = 64


class InvalidRequest(ValueError):
    """The message breaks the contract; nothing was sent. ``errors``: one ``path: problem`` line each."""

    def __init__(self, what: str, errors: list[str]) -> None:
        self.errors = errors
        shown = errors[:25] + ([f"... and {len(errors) - 25} more"] if len(errors) > 25 else [])
        super().__init__(f"{what} not sent:\n  " + "\n  ".join(shown))


def upload_request_errors(request: Any) -> list[str]:
    """What makes ``request`` no upload request (empty when it may be sent)."""
    if not isinstance(request, Mapping):
        return [f"request: must be an object (a dict), not {_kind(request)}"]
    errors = _json_errors(request, "")
    errors += _id_errors(request, "request_id", max_length=128)
    errors += _target_errors(request)
    priority = request.get("priority")
    if priority is not None and priority not in PRIORITIES:
        errors.append(f"priority: must be one of {', '.join(PRIORITIES)}")
    errors += candidate_errors(request.get("candidate"), "candidate", required=True)
    return errors


def backfill_errors(backfill: Any) -> list[str]:
    """What makes ``backfill`` no backfill (empty when it may be sent)."""
    if not isinstance(backfill, Mapping):
        return [f"backfill: must be an object (a dict), not {_kind(backfill)}"]
    errors = _json_errors(backfill, "")
    errors += _id_errors(backfill, "backfill_id", max_length=BACKFILL_ID_MAX)
    errors += _target_errors(backfill)
    candidates = backfill.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        errors.append("candidates: must be a non-empty list of candidates")
        return errors
    for index, entry in enumerate(candidates):
        path = f"candidates.{index}"
        if isinstance(entry, Mapping) and "candidate" in entry:
            # {"request_id": ..., "candidate": {...}}: an entry that brings its own request id.
            errors += [f"{path}.{line}" for line in _id_errors(entry, "request_id", max_length=128)]
            errors += candidate_errors(entry["candidate"], f"{path}.candidate", required=True)
        else:
            errors += candidate_errors(entry, path, required=True)
    return errors


def candidate_errors(candidate: Any, path: str, *, required: bool) -> list[str]:
    if candidate is None and not required:
        return []
    if not isinstance(candidate, Mapping):
        return [f"{path}: is required and must be an object (a dict)" if candidate is None else f"{path}: must be an object, not {_kind(candidate)}"]
    errors = []
    for name in ("first_name", "last_name", "email"):
        value = candidate.get(name)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{path}.{name}: is required (non-blank text)")
    email = candidate.get("email")
    if isinstance(email, str) and email.strip() and email.count("@") != 1:
        errors.append(f"{path}.email: must contain exactly one @")
    documents = candidate.get("documents")
    if documents is not None:
        if not isinstance(documents, list):
            errors.append(f"{path}.documents: must be a list")
        else:
            for index, document in enumerate(documents):
                errors += _document_errors(document, f"{path}.documents.{index}")
    return errors


def _document_errors(document: Any, path: str) -> list[str]:
    if not isinstance(document, Mapping):
        return [f"{path}: must be an object, not {_kind(document)}"]
    errors = []
    for name in ("category", "filename"):
        value = document.get(name)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{path}.{name}: is required (non-blank text)")
    sources = [name for name in DOCUMENT_SOURCES if document.get(name) is not None]
    if len(sources) != 1:
        errors.append(f"{path}: needs exactly one of {' or '.join(DOCUMENT_SOURCES)}")
    return errors


def _id_errors(message: Mapping[str, Any], field: str, *, max_length: int) -> list[str]:
    value = message.get(field)
    if not isinstance(value, str) or not value:
        return [f"{field}: is required (1-{max_length} of A-Z a-z 0-9 . _ : -)"]
    if len(value) > max_length or not _ID.fullmatch(value):
        return [f"{field}: must be 1-{max_length} of A-Z a-z 0-9 . _ : -, starting with a letter or digit"]
    return []


def _target_errors(message: Mapping[str, Any]) -> list[str]:
    errors = []
    for field in ("account_id", "project_id"):
        value = message.get(field)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{field}: is required (1-128 characters)")
        elif len(value) > 128 or any(unicodedata.category(char) == "Cc" for char in value):
            errors.append(f"{field}: must be 1-128 characters without control characters")
    return errors


def _json_errors(value: Any, path: str, depth: int = 0) -> list[str]:
    """Values JSON cannot carry (dates, bytes, NaN, non-text keys), each by its path."""
    if depth > 32:
        return [f"{path}: nests deeper than 32 levels"]
    if value is None or isinstance(value, (str, bool)):
        return []
    if isinstance(value, int):
        # Python refuses to print integers of more than 4300 digits (int_max_str_digits).
        return [] if value.bit_length() <= 14_000 else [f"{path}: is a number too large to send"]
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{path}: must be a finite number"]
    if isinstance(value, Mapping):
        errors = []
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(f"{path or 'message'}: has a field name that is {_kind(key)}, not text")
                continue
            errors += _json_errors(item, _join(path, key if _plain(key) else "<field>"), depth + 1)
        return errors
    if isinstance(value, (list, tuple)):
        return [error for index, item in enumerate(value) for error in _json_errors(item, _join(path, str(index)), depth + 1)]
    hint = " (send dates as 'YYYY-MM-DD' text, files as base64 text)" if _kind(value) in ("date", "datetime", "bytes") else ""
    return [f"{path}: {_kind(value)} is not a JSON value{hint}"]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _plain(key: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
