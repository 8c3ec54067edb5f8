"""The upload request contract, validated with marshmallow before any Personio request.

Every refusal names the field and says how to fix it. Limits mirror Personio's (document
types, 20 MB, dates) so a request Personio would refuse is refused here, for free.
"""

from __future__ import annotations

import base64
import binascii
import re
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates,
    validates_schema,
)

PERSONIO_EXTENSIONS = frozenset(
    "pdf pptx xlsx docx doc xls ppt ods odt 7z gz rar zip bmp gif jpg png tif csv txt rtf mp4 3gp mov avi wmv".split()
)
DOCUMENT_CATEGORIES = ("cv", "cover-letter", "employment-reference", "certificate", "work-sample", "other")
SYSTEM_ATTRIBUTES = ("birthday", "gender", "location", "phone", "available_from", "salary_expectations")
GENDERS = ("male", "female", "diverse", "undefined")
PERSONIO_MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
MAX_DOCUMENTS = 10
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_CUSTOM_ATTRIBUTE = re.compile(r"^custom_attribute_\d+$")
# The operator's limits reach the nested schemas through a context variable (marshmallow 4
# removes schema.context).
_POLICY: ContextVar[IntakePolicy] = ContextVar("intake_policy")


@dataclass(frozen=True)
class IntakePolicy:
    """The operator's limits for incoming requests (from settings)."""

    inline_document_max_bytes: int
    url_document_max_bytes: int
    document_url_hosts: tuple[str, ...]
    today: date


def _name(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be empty or only spaces.")


def _iso_date(text: str, what: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{what} must be a date in the form YYYY-MM-DD, e.g. 2026-03-01 (got {text!r}).") from None


def format_size(size: int) -> str:
    """A byte count as people read it: 10 MiB, 1.5 MiB, 512 KiB, 300 bytes (never "0 MiB")."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


class DocumentSchema(Schema):
    class Meta:
        unknown = RAISE

    category = fields.String(
        required=True,
        validate=validate.OneOf(DOCUMENT_CATEGORIES, error="must be one of: " + ", ".join(DOCUMENT_CATEGORIES) + "."),
    )
    filename = fields.String(required=True, validate=validate.Length(min=1, max=255))
    content_base64 = fields.String(load_default=None)
    url = fields.String(load_default=None)

    @validates("filename")
    def _filename(self, value: str, **_: Any) -> None:
        if "/" in value or "\\" in value or value.strip() != value or not value.strip():
            raise ValidationError("must be a plain file name such as cv.pdf, without a path.")
        extension = value.rsplit(".", 1)[-1].lower() if "." in value else ""
        if extension not in PERSONIO_EXTENSIONS:
            raise ValidationError(
                f"has the type {extension or '(none)'!r}, which Personio refuses. Use one of: "
                + ", ".join(sorted(PERSONIO_EXTENSIONS))
                + "."
            )

    @validates_schema(skip_on_field_errors=False)
    def _source(self, data: dict[str, Any], **_: Any) -> None:
        policy = _POLICY.get()
        inline, url = data.get("content_base64"), data.get("url")
        if (inline is None) == (url is None):
            raise ValidationError("give exactly one of content_base64 (the file, base64) or url (an https link).", "content_base64")
        if inline is not None:
            limit = min(policy.inline_document_max_bytes, PERSONIO_MAX_DOCUMENT_BYTES)
            # Check the encoded length first so a huge payload is never decoded.
            if len(inline) > (limit * 4) // 3 + 8:
                raise ValidationError(f"is larger than the {format_size(limit)} allowed inline; send larger files by url.", "content_base64")
            try:
                content = base64.b64decode(inline, validate=True)
            except (binascii.Error, ValueError):
                raise ValidationError("is not valid base64 (standard alphabet, with padding).", "content_base64") from None
            if not content:
                raise ValidationError("is empty; Personio refuses empty files.", "content_base64")
            if len(content) > limit:
                raise ValidationError(f"is larger than the {format_size(limit)} allowed inline; send larger files by url.", "content_base64")
            data["content"] = content
        else:
            parts = urlsplit(url or "")
            if parts.scheme != "https" or not parts.hostname:
                raise ValidationError("must be an https URL.", "url")
            if parts.username or parts.password or parts.port not in (None, 443):
                raise ValidationError("must not contain a user name, password or port.", "url")
            if not host_allowed(parts.hostname, policy.document_url_hosts):
                raise ValidationError(
                    f"points to {parts.hostname}, which is not an allowed document host. "
                    "The operator allows hosts with PERSONIO_SYNC_DOCUMENT_URL_HOSTS; otherwise send the file inline.",
                    "url",
                )


class CandidateSchema(Schema):
    class Meta:
        unknown = RAISE

    first_name = fields.String(required=True, validate=[validate.Length(min=1, max=255), _name])
    last_name = fields.String(required=True, validate=[validate.Length(min=1, max=255), _name])
    email = fields.Email(required=True, validate=validate.Length(max=255), error_messages={"invalid": "is not a valid email address."})
    phone = fields.String(load_default=None, validate=validate.Length(max=255))
    location = fields.String(load_default=None, validate=validate.Length(max=255))
    message = fields.String(load_default=None, validate=validate.Length(max=20_000))
    application_date = fields.String(load_default=None)
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=255)), load_default=list, validate=validate.Length(max=50))
    attributes = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.Length(max=1000)), load_default=dict)
    documents = fields.List(fields.Nested(DocumentSchema), load_default=list, validate=validate.Length(max=MAX_DOCUMENTS))

    @pre_load
    def _strip(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            data = {**data, "email": data["email"].strip()}
        return data

    @validates("application_date")
    def _application_date(self, value: str | None, **_: Any) -> None:
        if value is None:
            return
        day = _iso_date(value, "application_date")
        if day > _POLICY.get().today:
            raise ValidationError("lies in the future; Personio only accepts today or an earlier date.")

    @validates("attributes")
    def _attributes(self, value: dict[str, str], **_: Any) -> None:
        problems: dict[str, list[str]] = {}
        for key, item in value.items():
            if key in ("phone", "location"):
                problems[key] = [f"give {key} as candidate.{key}, not as an attribute."]
            elif key not in SYSTEM_ATTRIBUTES and not _CUSTOM_ATTRIBUTE.match(key):
                problems[key] = [
                    "is not a Personio attribute: use birthday, gender, available_from, salary_expectations "
                    "or custom_attribute_<number> (the API name in Personio's attribute settings)."
                ]
            elif key == "gender" and item not in GENDERS:
                problems[key] = ["must be one of: " + ", ".join(GENDERS) + "."]
            elif key == "birthday":
                try:
                    if _iso_date(item, "birthday") > _POLICY.get().today:
                        problems[key] = ["lies in the future."]
                except ValidationError as exc:
                    problems[key] = [str(m) for m in exc.messages]  # type: ignore[union-attr]
            elif key == "available_from":
                try:
                    _iso_date(item, "available_from")
                except ValidationError as exc:
                    problems[key] = [str(m) for m in exc.messages]  # type: ignore[union-attr]
        if problems:
            raise ValidationError(problems)


class UploadRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    request_id = fields.String(required=True, validate=validate.Regexp(_ID, error="must be 1–128 characters of letters, digits and . _ : - (a UUID is ideal)."))
    account_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    project_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    priority = fields.String(load_default="interactive", validate=validate.OneOf(("interactive", "backfill")))
    candidate = fields.Nested(CandidateSchema, required=True)


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                name = prefix or "request"
            out.extend(_flatten(value, name))
        return out
    if isinstance(messages, list):
        if all(isinstance(m, str) for m in messages):
            return [f"{prefix}: {m}" for m in messages]
        out = []
        for item in messages:
            out.extend(_flatten(item, prefix))
        return out
    return [f"{prefix}: {messages}"]


def _humanise(text: str) -> str:
    # marshmallow's stock sentences, made to say what to do.
    return (
        text.replace("Missing data for required field.", "is required but missing.")
        .replace("Unknown field.", "is not part of the contract; remove it (see the README's message contract).")
        .replace("Not a valid string.", "must be a string.")
        .replace("Not a valid list.", "must be a list.")
        .replace("Not a valid mapping type.", "must be an object.")
        .replace("Invalid input type.", "must be an object.")
        .replace("Field may not be null.", "must not be null.")
        .replace("Length must be between 1 and 128.", "must be 1–128 characters.")
        .replace("Shorter than minimum length 1.", "must not be empty.")
    )


class UploadRequestInvalid(ValueError):
    """The request breaks the contract; ``errors`` has one line per field."""

    def __init__(self, errors: list[str], request_id: str | None) -> None:
        self.errors = errors
        self.request_id = request_id
        super().__init__("; ".join(errors))


def load_upload_request(payload: Any, policy: IntakePolicy) -> dict[str, Any]:
    """Validate one upload request; return it with decoded document ``content``."""
    if not isinstance(payload, dict):
        raise UploadRequestInvalid(["request: must be a JSON object (see the README's message contract)."], None)
    token = _POLICY.set(policy)
    try:
        return UploadRequestSchema().load(payload)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raw_id = payload.get("request_id")
        request_id = raw_id if isinstance(raw_id, str) and _ID.match(raw_id) else None
        errors = [_humanise(line) for line in _flatten(exc.messages)]
        raise UploadRequestInvalid(sorted(errors), request_id) from None
    finally:
        _POLICY.reset(token)


__all__ = [
    "DOCUMENT_CATEGORIES",
    "EXCLUDE",
    "IntakePolicy",
    "PERSONIO_EXTENSIONS",
    "UploadRequestInvalid",
    "format_size",
    "host_allowed",
    "load_upload_request",
]
