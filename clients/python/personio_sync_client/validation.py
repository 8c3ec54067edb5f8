"""Cheap local checks of what a producer sends, so a mistake fails in the caller with a clear error.

Only what is required and the JSON shape are checked here; the full contract (email rules,
document types and sizes, attributes, ...) has one owner, the worker, which answers every
message that passes these checks: an upload request with an outcome on its events stream, each
candidate of a backfill chunk with its own outcome (one bad profile never holds up the rest). The
errors name fields by their path and never repeat the value sent (it may be candidate data).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from personio_sync_client.contract import (
    BACKFILL_CHUNK_INDEX_MAX,
    BACKFILL_CHUNK_MAX_BYTES,
    BACKFILL_CHUNK_MAX_CANDIDATES,
    BACKFILL_COUNT_MAX,
    BACKFILL_ID_MAX_LENGTH,
    ID_PATTERN,
)

PRIORITIES = ("interactive", "backfill")
DOCUMENT_SOURCES = ("content_base64", "url")
_ID = re.compile(ID_PATTERN)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_DEPTH = 32


class InvalidRequest(ValueError):
    """The message breaks the contract; nothing was sent. ``errors``: one ``path: problem`` line each."""

    def __init__(self, what: str, errors: list[str]) -> None:
        self.errors = errors
        shown = errors[:25] + ([f"... and {len(errors) - 25} more"] if len(errors) > 25 else [])
        super().__init__(f"{what} not sent:\n  " + "\n  ".join(shown))


# ------------------------------------------------------------------ messages


def upload_request_errors(request: Any) -> list[str]:
    """What makes ``request`` no upload request (empty when it may be sent)."""
    if not isinstance(request, Mapping):
        return [f"request: must be an object (a dict), not {_kind(request)}"]
    errors = json_errors(request)
    errors += id_errors(request.get("request_id"), "request_id")
    errors += _target_errors(request)
    priority = request.get("priority")
    if priority is not None and priority not in PRIORITIES:
        errors.append(f"priority: must be one of {', '.join(PRIORITIES)}")
    errors += candidate_errors(request.get("candidate"), "candidate")
    return errors


def backfill_errors(backfill: Any) -> list[str]:
    """A whole backfill ``{"backfill_id", "account_id", "project_id", "candidates"}`` (sent in chunks)."""
    if not isinstance(backfill, Mapping):
        return [f"backfill: must be an object (a dict), not {_kind(backfill)}"]
    errors = json_errors(backfill)
    errors += id_errors(backfill.get("backfill_id"), "backfill_id", BACKFILL_ID_MAX_LENGTH)
    errors += _target_errors(backfill)
    candidates = backfill.get("candidates")
    if not isinstance(candidates, list):
        errors.append("candidates: must be a list of candidates (or of {\"request_id\", \"candidate\"} objects)")
    else:
        errors += _entries_errors(candidates)
    return errors


def start_errors(start: Any) -> list[str]:
    """``{"backfill_id", "account_id", "project_id", "expected_total"?}``."""
    if not isinstance(start, Mapping):
        return [f"start: must be an object (a dict), not {_kind(start)}"]
    errors = json_errors(start)
    errors += id_errors(start.get("backfill_id"), "backfill_id", BACKFILL_ID_MAX_LENGTH)
    errors += _target_errors(start)
    errors += _count_errors(start.get("expected_total"), "expected_total", BACKFILL_COUNT_MAX)
    return errors


def chunk_errors(chunk: Any) -> list[str]:
    """``{"backfill_id", "chunk_index", "candidates"}`` within the chunk limits."""
    if not isinstance(chunk, Mapping):
        return [f"chunk: must be an object (a dict), not {_kind(chunk)}"]
    errors = json_errors(chunk)
    errors += id_errors(chunk.get("backfill_id"), "backfill_id", BACKFILL_ID_MAX_LENGTH)
    index = chunk.get("chunk_index")
    if index is None:
        errors.append(f"chunk_index: is required (0-{BACKFILL_CHUNK_INDEX_MAX}, unique per chunk of the backfill)")
    else:
        errors += _count_errors(index, "chunk_index", BACKFILL_CHUNK_INDEX_MAX)
    candidates = chunk.get("candidates")
    if not isinstance(candidates, list):
        errors.append("candidates: must be a list of candidates (or of {\"request_id\", \"candidate\"} objects)")
        return errors
    errors += _entries_errors(candidates)
    if len(candidates) > BACKFILL_CHUNK_MAX_CANDIDATES:
        errors.append(f"candidates: a chunk holds at most {BACKFILL_CHUNK_MAX_CANDIDATES} candidates, this one has {len(candidates)}; split it (backfill_chunks() does)")
    elif not errors:
        size = sum(entry_size(entry) for entry in candidates)
        if size > BACKFILL_CHUNK_MAX_BYTES:
            errors.append(f"candidates: a chunk holds at most {BACKFILL_CHUNK_MAX_BYTES} bytes of JSON, this one has {size}; "
                          "send fewer candidates per chunk (backfill_chunks() packs them), or documents by url")
    return errors


def seal_errors(seal: Any) -> list[str]:
    """``{"backfill_id", "chunk_count"?}``."""
    if not isinstance(seal, Mapping):
        return [f"seal: must be an object (a dict), not {_kind(seal)}"]
    return [*json_errors(seal), *id_errors(seal.get("backfill_id"), "backfill_id", BACKFILL_ID_MAX_LENGTH),
            *_count_errors(seal.get("chunk_count"), "chunk_count", BACKFILL_COUNT_MAX)]


def backfill_id_errors(backfill_id: Any) -> list[str]:
    return id_errors(backfill_id, "backfill_id", BACKFILL_ID_MAX_LENGTH)


# ------------------------------------------------------------------ parts


def entry_size(entry: Any) -> int:
    """Bytes of one candidate entry as the worker measures a chunk (compact JSON, UTF-8)."""
    return len(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def candidate_errors(candidate: Any, path: str) -> list[str]:
    """The required fields of one candidate (an upload request's; the worker checks the rest)."""
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


def _entries_errors(entries: list[Any]) -> list[str]:
    # Only the shape of each entry: a candidate's content is answered per candidate by the worker.
    errors = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            errors.append(f"candidates.{index}: must be a candidate object, not {_kind(entry)}")
        elif "candidate" in entry:
            errors += [f"candidates.{index}.{line}" for line in id_errors(entry.get("request_id"), "request_id")]
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


def id_errors(value: Any, field: str, max_length: int = 128) -> list[str]:
    rule = f"1-{max_length} of A-Z a-z 0-9 . _ : -, starting with a letter or digit"
    if not isinstance(value, str) or not value:
        return [f"{field}: is required ({rule})"]
    if len(value) > max_length or not _ID.fullmatch(value):
        return [f"{field}: must be {rule}"]
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


def _count_errors(value: Any, field: str, maximum: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        return [f"{field}: must be a whole number from 0 to {maximum}"]
    return []


def json_errors(value: Any, path: str = "", depth: int = 0) -> list[str]:
    """Values JSON cannot carry (dates, bytes, NaN, huge integers, non-text keys), each by its path."""
    if depth > MAX_DEPTH:
        return [f"{path}: nests deeper than {MAX_DEPTH} levels"]
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
            errors += json_errors(item, _join(path, key if _PLAIN_KEY.fullmatch(key) else "<field>"), depth + 1)
        return errors
    if isinstance(value, (list, tuple)):
        return [error for index, item in enumerate(value) for error in json_errors(item, _join(path, str(index)), depth + 1)]
    hint = " (send dates as 'YYYY-MM-DD' text, files as base64 text)" if _kind(value) in ("date", "datetime", "bytes") else ""
    return [f"{path or 'message'}: {_kind(value)} is not a JSON value{hint}"]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
