"""The upload request contract, validated with marshmallow before any Personio request.

Every refusal names the field and says how to fix it. Limits mirror Personio's (document
types, 20 MB, dates, email format) so a request Personio would refuse is refused here, for free.

Refusals travel in ``upload.finished``/``upload.invalid`` events, which carry ids and outcomes
only. So no message ever quotes a submitted value, and a field is named by its path
(``candidate.documents.0.url``); a field name that is not a plain name (letters, digits,
``_``, ``-``, at most 64) is named by its position instead (``candidate.<key #3>``). Every
message is plain, encodable text even when the request was not.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import threading
from collections.abc import Iterator
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
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from personio.phases import PHASE_TYPES, SYSTEM_PHASES, Phase, PhaseInvalid, canonical_phase
from services.sentences import Sentence, choices, sentence_for

PERSONIO_EXTENSIONS = frozenset(
    "pdf pptx xlsx docx doc xls ppt ods odt 7z gz rar zip bmp gif jpg png tif csv txt rtf mp4 3gp mov avi wmv".split()
)
DOCUMENT_CATEGORIES = ("cv", "cover-letter", "employment-reference", "certificate", "work-sample", "other")
SYSTEM_ATTRIBUTES = ("birthday", "gender", "location", "phone", "available_from", "salary_expectations")
GENDERS = ("male", "female", "diverse", "undefined")
PERSONIO_MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
MAX_DOCUMENTS = 10
MAX_TAGS = 50
MAX_URL_LENGTH = 2048
MAX_EMAIL_LENGTH = 255
MAX_ATTRIBUTE_LENGTH = 1000
# Personio's own limit for available_from (OpenAPI, Applicant.available_from: maxLength 100);
# it is free text ("As soon as possible") or a date.
MAX_AVAILABLE_FROM_LENGTH = 100
# Personio's limit for external_posting_id (OpenAPI, Applicant.external_posting_id: maxLength 255).
MAX_EXTERNAL_POSTING_ID_LENGTH = 255
# An attribute number longer than this is not sent as text (Python refuses to print ints of
# more than 4300 digits; no attribute needs more than a few dozen).
_MAX_NUMBER_BITS = 3000
# At most this many refusals are listed; the rest are counted in one last line.
MAX_ERRORS = 25
# Deeper paths are cut to this many parts (followed by "…") in messages.
MAX_PATH_PARTS = 12

# Every regex that validates a whole value is used with fullmatch: "$" would let a trailing
# newline through. Character classes are spelled out ([0-9], not \d, which matches any
# script's digits).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_CUSTOM_ATTRIBUTE = re.compile(r"custom_attribute_[0-9]{1,20}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Text that cannot be stored or sent: lone UTF-16 surrogates (a JSON "\ud800" without its
# partner decodes to one; such a string has no UTF-8 form, so the database, Redis and Personio
# all choke on it) and NUL (PostgreSQL text cannot hold it). A Python str holds nothing
# else that UTF-8 cannot encode.
_BAD_TEXT = re.compile("[\ud800-\udfff\x00]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

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


# ------------------------------------------------------------------ text and ids


def text_problem(value: str) -> str | None:
    """Why ``value`` is not storable text (for a message), or None when it is fine."""
    found = _BAD_TEXT.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "NUL character"
    return "unpaired UTF-16 surrogate"


def _bad_text_message(problem: str, *, name: bool = False) -> Sentence:
    kind = "nul" if problem == "NUL character" else "surrogate"
    return Sentence(f"bad_name_{kind}" if name else f"bad_text_{kind}")


def usable_request_id(value: Any) -> str | None:
    """``value`` if it is a valid request_id (the idempotency key), else None."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def printable_id(value: Any, max_length: int = 128) -> str | None:
    """``value`` if it is an id that is safe to store and publish as given, else None.

    Safe: a string of 1 to ``max_length`` characters, valid text, no control characters.
    Used for ids of refused requests, which are kept and published only when safe.
    """
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        return None
    if text_problem(value) is not None or _CONTROL.search(value):
        return None
    return value


# --------------------------------------------------------------------- email

# Personio's application endpoint checks the email's format (its OpenAPI file declares
# "format: email" and it answers errors.attribute-validation.invalid-email-format). A
# request Personio will refuse should not cost one of the company's 20 requests a minute,
# so we check what such validators check: one @; a local part of letters, digits and
# ! # $ % & ' * + / = ? ^ _ ` { | } ~ - with single dots between (no quoted forms), at most
# 64; a host name with at least one dot, labels of letters, digits and inner hyphens, a
# top-level domain of two or more letters (or an xn-- punycode one); no IP literals, no
# spaces; at most 255 characters in all. Internationalised addresses pass: non-ASCII
# letters in the local part, and domains whose IDNA (punycode) form passes the same rules.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")


def email_problem(email: str) -> Sentence | None:
    """What is wrong with ``email`` (a fix, never the value), or None when it is plausible."""
    if len(email) > MAX_EMAIL_LENGTH:
        return Sentence("email_too_long", max=MAX_EMAIL_LENGTH)
    if any(c.isspace() for c in email) or _CONTROL.search(email):
        return Sentence("email_spaces")
    if email.count("@") != 1:
        return Sentence("email_one_at")
    local, domain = email.split("@")
    if not local or len(local) > 64:
        return Sentence("email_local_length")
    # Non-ASCII letters and digits count as letters (internationalised addresses).
    ascii_local = "".join("a" if ord(c) > 127 and c.isalnum() else c for c in local)
    if not _LOCAL_PART.fullmatch(ascii_local):
        return Sentence("email_local_characters")
    labels = domain.split(".")
    if len(labels) < 2:
        return Sentence("email_domain_dot")
    ascii_labels = []
    for label in labels:
        if label and not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                return Sentence("email_idna")
        if not _LABEL.fullmatch(label):
            return Sentence("email_label")
        ascii_labels.append(label)
    if len(".".join(ascii_labels)) > 253:
        return Sentence("email_domain_too_long")
    if not _TLD.fullmatch(ascii_labels[-1]):
        return Sentence("email_tld")
    return None


# ------------------------------------------------------------------- fields

# Every message below is a services.sentences.Sentence: its English text as a str, plus the key
# that gives its German text for message_de. marshmallow "formats" a message before raising it;
# a Sentence's parameters are bound already, so it stays what it is.
_COMMON_ERRORS: dict[str, str] = {
    "required": Sentence("required"),
    "null": Sentence("null"),
    "validator_failed": Sentence("not_valid"),
}


class _Text(fields.String):
    default_error_messages = {**_COMMON_ERRORS, "invalid": Sentence("string"), "invalid_utf8": Sentence("utf8")}


class _List(fields.List):
    default_error_messages = {**_COMMON_ERRORS, "invalid": Sentence("list")}


class _Nested(fields.Nested):
    default_error_messages = {**_COMMON_ERRORS, "type": Sentence("object")}


class _Raw(fields.Raw):
    default_error_messages = _COMMON_ERRORS


_UNKNOWN = Sentence("unknown_field")


class _Contract(Schema):
    error_messages = {"type": Sentence("object"), "unknown": _UNKNOWN}

    class Meta:
        unknown = RAISE


def _length(low: int, high: int) -> validate.Length:
    if low == 0:
        return validate.Length(max=high, error=Sentence("max_length", max=high))
    return validate.Length(min=low, max=high, error=Sentence("length", min=low, max=high))


def _one_of(values: tuple[str, ...]) -> validate.OneOf:
    return validate.OneOf(values, error=Sentence("one_of", choices=choices(values)))


def _name(value: str) -> None:
    if not value.strip():
        raise ValidationError(Sentence("blank"))


def _request_id(value: str) -> None:
    if not _ID.fullmatch(value):
        raise ValidationError(Sentence("request_id"))


def _plain_id(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError(Sentence("control_characters"))


def _email(value: str) -> None:
    problem = email_problem(value)
    if problem is not None:
        raise ValidationError(Sentence("email", problem=problem))


def _iso_date(text: str) -> date:
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(Sentence("date")) from None


def format_size(size: int, language: str = "en") -> str:
    """A byte count as people read it: 10 MiB, 1.5 MiB, 512 KiB, 300 bytes (never "0 MiB").

    In German with a decimal comma and "Bytes" (1,5 MiB, 300 Bytes).
    """
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor:
            number = f"{size / factor:.1f}".removesuffix(".0")
            return (number.replace(".", ",") if language == "de" else number) + f" {unit}"
    return f"{size} Bytes" if language == "de" else f"{size} bytes"


def _sizes(size: int) -> dict[str, str]:
    """``format_size`` in every language, as a Sentence parameter."""
    return {"en": format_size(size), "de": format_size(size, "de")}


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def _url_problem(url: str, policy: IntakePolicy) -> Sentence | None:
    """What is wrong with a document URL (never quoting it), or None."""
    if len(url) > MAX_URL_LENGTH:
        return Sentence("max_length", max=MAX_URL_LENGTH)
    if any(c.isspace() for c in url) or _CONTROL.search(url):
        # urlsplit silently drops tabs and line breaks; refuse them instead.
        return Sentence("url_spaces")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        # .port raises ValueError for a port that is not a number or out of 0–65535.
        port = parts.port
    except ValueError:
        # A port such as :abc or :99999, or a broken IPv6 literal such as [::1.
        return Sentence("url_invalid")
    if parts.scheme != "https" or not hostname:
        return Sentence("url_https")
    if parts.username is not None or parts.password is not None or port not in (None, 443):
        return Sentence("url_credentials")
    if not host_allowed(hostname, policy.document_url_hosts):
        return Sentence("url_host")
    return None


# ------------------------------------------------------------------ schemas


class DocumentSchema(_Contract):
    category = _Text(required=True, validate=_one_of(DOCUMENT_CATEGORIES))
    filename = _Text(required=True, validate=_length(1, 255))
    content_base64 = _Text(load_default=None)
    url = _Text(load_default=None)

    @validates("filename")
    def _filename(self, value: str, **_: Any) -> None:
        if "/" in value or "\\" in value or value.strip() != value or not value.strip() or _CONTROL.search(value):
            raise ValidationError(Sentence("filename_plain"))
        extension = value.rsplit(".", 1)[-1].lower() if "." in value else ""
        if extension not in PERSONIO_EXTENSIONS:
            raise ValidationError(Sentence("filename_extension", extensions=choices(sorted(PERSONIO_EXTENSIONS))))

    @validates_schema(skip_on_field_errors=False)
    def _source(self, data: dict[str, Any], **_: Any) -> None:
        policy = _POLICY.get()
        inline, url = data.get("content_base64"), data.get("url")
        if (inline is None) == (url is None):
            raise ValidationError(Sentence("document_source"), "content_base64")
        if inline is not None:
            limit = min(policy.inline_document_max_bytes, PERSONIO_MAX_DOCUMENT_BYTES)
            # Check the encoded length first so a huge payload is never decoded.
            if len(inline) > (limit * 4) // 3 + 8:
                raise ValidationError(Sentence("document_too_large", limit=_sizes(limit)), "content_base64")
            try:
                content = base64.b64decode(inline, validate=True)
            except (binascii.Error, ValueError):
                raise ValidationError(Sentence("document_base64"), "content_base64") from None
            if not content:
                raise ValidationError(Sentence("document_empty"), "content_base64")
            if len(content) > limit:
                raise ValidationError(Sentence("document_too_large", limit=_sizes(limit)), "content_base64")
            data["content"] = content
        elif url is not None and text_problem(url) is None:  # bad text is reported on its own
            problem = _url_problem(url, policy)
            if problem is not None:
                raise ValidationError(problem, "url")


class CandidateSchema(_Contract):
    first_name = _Text(required=True, validate=[_length(1, 255), _name])
    last_name = _Text(required=True, validate=[_length(1, 255), _name])
    email = _Text(required=True, validate=_email)
    phone = _Text(load_default=None, validate=_length(0, 255))
    location = _Text(load_default=None, validate=_length(0, 255))
    message = _Text(load_default=None, validate=_length(0, 20_000))
    application_date = _Text(load_default=None)
    tags = _List(
        _Text(validate=_length(1, 255)),
        load_default=list,
        validate=validate.Length(max=MAX_TAGS, error=Sentence("too_many_tags", max=MAX_TAGS)),
    )
    attributes = _Raw(load_default=dict)
    documents = _List(
        _Nested(DocumentSchema),
        load_default=list,
        validate=validate.Length(max=MAX_DOCUMENTS, error=Sentence("too_many_documents", max=MAX_DOCUMENTS)),
    )

    @pre_load
    def _strip(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            data = {**data, "email": data["email"].strip()}
        if isinstance(data, dict) and isinstance(data.get("attributes"), dict):
            # Personio takes every attribute value as text: a number or a boolean is sent as
            # the text it stands for, so "custom_attribute_7": 5 arrives as "5".
            data = {**data, "attributes": {key: _scalar_text(item) for key, item in data["attributes"].items()}}
        return data

    @validates("application_date")
    def _application_date(self, value: str | None, **_: Any) -> None:
        if value is None:
            return
        if _iso_date(value) > _POLICY.get().today:
            raise ValidationError(Sentence("application_date_future"))

    @validates("attributes")
    def _attributes(self, value: Any, **_: Any) -> None:
        if not isinstance(value, dict):
            raise ValidationError(Sentence("attributes_object"))
        problems: dict[Any, list[str]] = {}
        for key, item in value.items():
            if not isinstance(key, str) or text_problem(key) is not None:
                continue  # a name that is not text is reported on its own
            if key in ("phone", "location"):
                problems[key] = [Sentence("attribute_misplaced", name=key)]
            elif key not in SYSTEM_ATTRIBUTES and not _CUSTOM_ATTRIBUTE.fullmatch(key):
                problems[key] = [Sentence("attribute_unknown")]
            elif not isinstance(item, str):
                problems[key] = [_attribute_type_problem(item)]
            elif len(item) > MAX_ATTRIBUTE_LENGTH:
                problems[key] = [Sentence("max_length", max=MAX_ATTRIBUTE_LENGTH)]
            elif key == "gender" and item not in GENDERS:
                problems[key] = [Sentence("one_of", choices=choices(GENDERS))]
            elif key == "birthday":
                try:
                    if _iso_date(item) > _POLICY.get().today:
                        problems[key] = [Sentence("birthday_future")]
                except ValidationError as exc:
                    problems[key] = [sentence_for(m) for m in exc.messages]
            elif key == "available_from":
                problem = _available_from_problem(item)
                if problem is not None:
                    problems[key] = [problem]
        if problems:
            raise ValidationError(problems)


def _scalar_text(value: Any) -> Any:
    """A number or boolean as the text Personio should get; anything else unchanged.

    Booleans as JSON spells them (true/false), integers in full, floats in their shortest
    round-trip form. NaN, infinities and integers too long to print stay as they are, so the
    validator refuses them with a reason.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= _MAX_NUMBER_BITS else value
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else value
    return value


def _attribute_type_problem(value: Any) -> Sentence:
    """Why an attribute value that is not text (after _scalar_text) cannot be sent."""
    if value is None:
        return Sentence("attribute_null")
    if isinstance(value, float):
        return Sentence("attribute_not_finite")
    if isinstance(value, int):
        return Sentence("attribute_number_too_long", max=MAX_ATTRIBUTE_LENGTH)
    if isinstance(value, list):
        return Sentence("attribute_list")
    return Sentence("attribute_object")


def _available_from_problem(value: str) -> Sentence | None:
    """What is wrong with an available_from value, or None: free text or a date, as Personio takes it."""
    if not value.strip():
        return Sentence("available_from_empty")
    if len(value) > MAX_AVAILABLE_FROM_LENGTH:
        return Sentence("available_from_too_long", max=MAX_AVAILABLE_FROM_LENGTH)
    if _CONTROL.search(value):
        return Sentence("available_from_one_line")
    if _ISO_DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            return Sentence("available_from_no_such_day")
    return None


def _phase_problem(error: PhaseInvalid, kind: Any) -> Sentence:
    """personio.phases' fix as a sentence of both languages (its English is the same text)."""
    if error.part == "type":
        return Sentence("one_of", choices=choices(PHASE_TYPES))
    if kind == "system":
        return Sentence("phase_system_id", choices=choices(SYSTEM_PHASES))
    return Sentence("phase_custom_id")


class PhaseSchema(_Contract):
    """Personio's ``phase`` object: ``{"type": "system", "id": "offer"}`` or ``{"type": "custom", "id": 42}``."""

    error_messages = {
        "type": Sentence("phase_object"),
        "unknown": _UNKNOWN,
    }
    type = _Text(required=True, validate=_one_of(PHASE_TYPES))
    id = _Raw(required=True)

    @validates_schema(skip_on_field_errors=True)
    def _id(self, data: dict[str, Any], **_: Any) -> None:
        try:
            canonical_phase(data["type"], data["id"])
        except PhaseInvalid as error:
            raise ValidationError(_phase_problem(error, data["type"]), error.part or "id") from None

    @post_load
    def _canonical(self, data: dict[str, Any], **_: Any) -> Phase:
        # A custom id sent as "42" is sent to Personio as the integer it expects.
        return canonical_phase(data["type"], data["id"])


class UploadRequestSchema(_Contract):
    request_id = _Text(required=True, validate=_request_id)
    account_id = _Text(required=True, validate=[_length(1, 128), _plain_id])
    project_id = _Text(required=True, validate=[_length(1, 128), _plain_id])
    priority = _Text(load_default="interactive", validate=_one_of(("interactive", "backfill")))
    candidate = _Nested(CandidateSchema, required=True)
    # Where the application lands in Personio; overrides the project link's and the
    # connection's phase. Absent or null: the link's, else the connection's, else Personio's own.
    phase = _Nested(PhaseSchema, load_default=None)
    external_posting_id = _Text(
        load_default=None,
        validate=[_length(0, MAX_EXTERNAL_POSTING_ID_LENGTH), _name, _plain_id],
    )


# ------------------------------------------------------------ error reports

Path = tuple[str, ...]


class _KeyNames:
    """A field name as it may appear in a message: plain names as they are, others by position."""

    def __init__(self) -> None:
        self._positions: dict[int, dict[Any, int]] = {}

    def segment(self, key: Any, container: Any) -> str:
        if isinstance(container, list) and isinstance(key, int):
            return str(key)
        if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
            return key
        position = None
        if isinstance(container, dict):
            positions = self._positions.get(id(container))
            if positions is None:
                positions = self._positions[id(container)] = {k: i for i, k in enumerate(container, 1)}
            position = positions.get(key)
        return f"<key #{position}>" if position else "<key>"


def _render(path: Path) -> str:
    if not path:
        return "request"
    if len(path) > MAX_PATH_PARTS:
        path = (*path[:MAX_PATH_PARTS], "…")
    return ".".join(path)


def _extend(path: Path, part: str) -> Path:
    # Parts past what _render shows are not kept (a deep chain would cost depth² otherwise).
    return path if len(path) > MAX_PATH_PARTS else (*path, part)


def _child(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    if isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container):
        return container[key]
    return None


def _scan_text(payload: Any, names: _KeyNames) -> Iterator[tuple[Path, Sentence]]:
    """Every string (values and field names, at any depth) that is not valid text.

    Iterative, so a request nested a thousand levels deep costs a loop, not the stack.
    """
    stack: list[tuple[Any, Path]] = [(payload, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                yield path, _bad_text_message(problem)
        elif isinstance(value, dict):
            for key, item in value.items():
                child = _extend(path, names.segment(key, value))
                problem = text_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    yield child, _bad_text_message(problem, name=True)
                else:
                    stack.append((item, child))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, _extend(path, str(index))))


def _flatten(messages: Any, data: Any, path: Path, names: _KeyNames) -> Iterator[tuple[Path, Sentence]]:
    """marshmallow's nested error dict as (path, message), paths built from the payload."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":
                yield from _flatten(value, data, path, names)
            else:
                yield from _flatten(value, _child(data, key), _extend(path, names.segment(key, data)), names)
    elif isinstance(messages, list):
        for item in messages:
            yield from _flatten(item, data, path, names)
    else:
        yield path, sentence_for(messages)


def _natural(entry: tuple[str, str]) -> tuple[Any, ...]:
    """Sort key: by field path, list positions as numbers (tags.2 before tags.10), then message."""
    field, message = entry
    return (tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in field.split(".")), message)


def _report(payload: Any, exc: ValidationError | None) -> tuple[list[tuple[str, Sentence]], list[str]]:
    """The refusals as (field, sentence) (sorted, capped) and the field names they concern."""
    names = _KeyNames()
    text = {(_render(path), message) for path, message in _scan_text(payload, names)}
    bad_names = {field for field, message in text if message.key.startswith("bad_name_")}
    bad_values = {field for field, _ in text} - bad_names
    schema = set()
    if exc is not None:
        for path, message in _flatten(exc.messages, payload, (), names):
            field = _render(path)
            # A field whose text is unreadable gets that one message, not a second guess
            # about the value; that the name is not in the contract is still said.
            if field in bad_names or (field in bad_values and message != _UNKNOWN):
                continue
            schema.add((field, message))
    found = sorted(text | schema, key=_natural)
    listed = found[:MAX_ERRORS]
    fields_ = list(dict.fromkeys(field for field, _ in listed))
    if len(found) > MAX_ERRORS:
        more = len(found) - MAX_ERRORS
        listed.append(("request", Sentence("one_more_problem") if more == 1 else Sentence("more_problems", count=more)))
    return listed, fields_


def _german_line(line: str) -> str:
    field, _, message = line.partition(": ")
    return f"{field}: {sentence_for(message).german}"


class UploadRequestInvalid(ValueError):
    """The request breaks the contract; ``errors`` has one line per field (``<field>: <English
    sentence>``, published in events), ``errors_de`` the same lines in German, ``sentences`` the
    lines' sentences, ``fields`` the field names.

    Build it with :meth:`of` from sentences; lines given as plain text get their German from the
    sentence table by their English text.
    """

    def __init__(
        self, errors: list[str], request_id: str | None, fields: list[str] | None = None, errors_de: list[str] | None = None
    ) -> None:
        self.errors = errors
        self.errors_de = errors_de if errors_de is not None else [_german_line(line) for line in errors]
        # Each line's sentence (its key says which refusal it is, in any language).
        self.sentences = [sentence_for(line.partition(": ")[2]) for line in errors]
        self.request_id = request_id
        self.fields = fields if fields is not None else list(dict.fromkeys(line.split(": ", 1)[0] for line in errors))
        super().__init__("; ".join(errors))

    @classmethod
    def of(cls, lines: list[tuple[str, Sentence]], request_id: str | None, fields: list[str] | None = None) -> UploadRequestInvalid:
        """From (field path, sentence) pairs: the field path as it is, the sentence per language."""
        invalid = cls(
            [f"{field}: {sentence}" for field, sentence in lines],
            request_id,
            fields,
            [f"{field}: {sentence.german}" for field, sentence in lines],
        )
        invalid.sentences = [sentence for _, sentence in lines]
        return invalid

    @property
    def details(self) -> dict[str, str]:
        """The ``{details}`` of ``personio-sync.invalid-request``, per language."""
        return {"en": " ".join(self.errors), "de": " ".join(self.errors_de)}


def unchecked_request(request_id: str | None) -> UploadRequestInvalid:
    """The refusal for a request whose validation failed with an internal error (a bug)."""
    return UploadRequestInvalid.of([("request", Sentence("request_unchecked"))], request_id, ["request"])


_SCHEMA_LOCK = threading.Lock()
_SCHEMA: list[UploadRequestSchema] = []


def _upload_request_schema() -> UploadRequestSchema:
    """One schema instance for every load (loading keeps no state in it; the policy is a context
    variable): building a schema and its nested ones cost more than the load itself, which made
    a backfill chunk's intake take twice as long."""
    if not _SCHEMA:
        with _SCHEMA_LOCK:
            if not _SCHEMA:
                # Its nested schemas are built on first use; two threads doing so at once build
                # two equal ones, and either serves.
                _SCHEMA.append(UploadRequestSchema())
    return _SCHEMA[0]


def load_upload_request(payload: Any, policy: IntakePolicy) -> dict[str, Any]:
    """Validate one upload request; return it with decoded document ``content``."""
    if not isinstance(payload, dict):
        raise UploadRequestInvalid.of([("request", Sentence("request_not_object"))], None, ["request"])
    token = _POLICY.set(policy)
    try:
        loaded: dict[str, Any] = _upload_request_schema().load(payload)
        failure = None
    except ValidationError as exc:
        failure = exc
    finally:
        _POLICY.reset(token)
    if failure is None and not any(True for _ in _scan_text(payload, _KeyNames())):
        return loaded
    lines, fields_ = _report(payload, failure)
    raise UploadRequestInvalid.of(lines, usable_request_id(payload.get("request_id")), fields_)


__all__ = [
    "DOCUMENT_CATEGORIES",
    "EXCLUDE",
    "IntakePolicy",
    "MAX_ERRORS",
    "PERSONIO_EXTENSIONS",
    "UploadRequestInvalid",
    "email_problem",
    "format_size",
    "host_allowed",
    "load_upload_request",
    "printable_id",
    "text_problem",
    "unchecked_request",
    "usable_request_id",
]
