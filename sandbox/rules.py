"""Personio's validation rules for applications, and the error bodies it answers with.

``validate_application`` reports every field error of a payload at once, the
way Personio's recruiting API does; the helpers build the two error item
shapes of its OpenAPI description (field errors and generic errors).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date
from http import HTTPStatus
from typing import Any

from sandbox.config import CompanyConfig

# The upload types Personio's API documentation lists as accepted, with the
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
# available_from is free text or a date ("As soon as possible" is Personio's own example), so
# only birthday must be an ISO 8601 local date.
DATE_ATTRIBUTES = ("birthday",)
FIELD_ERROR_TYPE = "com.personio.recruiting.publicapi.validation.FieldError"

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
    elif not _is_int(phase["id"]):
        # "For custom phases this is an integer" (OpenAPI); the stand-in is strict about it
        # so a client that sends "42" is caught here, not in production.
        errors.add("phase", "errors.attribute-validation.invalid-type", expected="integer")
    # Unknown custom phases are accepted: Personio files them under "unassigned" (filed_phase).


def filed_phase(payload: dict[str, Any], company: CompanyConfig) -> dict[str, Any] | None:
    """The phase Personio files a valid application under: the one sent, "unassigned" for a
    custom phase the company does not have, None (the category's initial phase) without one."""
    phase = payload.get("phase")
    if not isinstance(phase, dict):
        return None
    if phase.get("type") == "custom" and phase.get("id") not in company.custom_phases:
        return {"type": "system", "id": "unassigned"}
    return {"type": phase.get("type"), "id": phase.get("id")}


def _check_tags(payload: dict[str, Any], errors: FieldErrors) -> None:
    tags = payload.get("tags")
    if tags is None:
        return
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        errors.add("tags", "errors.attribute-validation.invalid-type", expected="array of strings")


def _list_field(payload: dict[str, Any], key: str, errors: FieldErrors) -> list[Any]:
    """The array under ``key``: empty when absent, and when not an array (with its error)."""
    value = payload.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(key, "errors.attribute-validation.invalid-type", expected="array")
        return []
    return value


def _check_files(
    payload: dict[str, Any], has_document: Callable[[str], bool], errors: FieldErrors
) -> None:
    for index, item in enumerate(_list_field(payload, "files", errors)):
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
    for index, item in enumerate(_list_field(payload, "attributes", errors)):
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
