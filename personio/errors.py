"""One typed error tree for everything Personio can answer (see docs/personio.md, "Error bodies
and reason codes").

Every documented answer of the recruiting API is classified once, here, from the HTTP
response: the rest of the code asks an error whether it is ``retryable`` and what its
``reason_code`` is, and never looks at status codes or bodies itself. Messages carry the
path, status and reason codes only: never the token, never candidate data.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from typing import Any

import requests

# Every reason code Personio documents for the recruiting API (its OpenAPI
# ``error_response`` table; see docs/personio.md, "Error bodies and reason codes"), in the
# spec's order.
DOCUMENTED_REASON_CODES = (
    "errors.attribute-validation.unknown",
    "errors.attribute-validation.required-attribute",
    "errors.attribute-validation.invalid-date-format",
    "errors.attribute-validation.invalid-email-format",
    "errors.attribute-validation.invalid-type",
    "errors.attribute-validation.unknown-attribute-option",
    "errors.date-validation.date-in-the-future",
    "errors.phase-validation.invalid-system-phase",
    "errors.file-validation.file-not-exists",
    "errors.file-validation.unknown-file-category",
    "errors.invalid-file-type",
    "errors.file-too-big",
    "errors.applicant-already-exists",
    "errors.posting-validation.posting-not-found",
    "errors.posting-validation.channel-not-found",
    "errors.job-position.not-published",
    "feature.recruiting.disabled",
    "feature.public-api.disabled",
)
APPLICANT_EXISTS_CODES = frozenset({"errors.applicant-already-exists", "errors.applicant-exists"})
FEATURE_CODES = frozenset({"feature.recruiting.disabled", "feature.public-api.disabled"})
# Wordings Personio sent (and older accounts still send) instead of a reason code.
LEGACY_WORDINGS = {"applicant already applied to this position.": "errors.applicant-already-exists"}
# Our codes for refusals that carry no reason code of Personio's.
BAD_REQUEST_CODE = "personio.bad_request"
UNPROCESSABLE_CODE = "personio.unprocessable"
MAX_DETAIL_CHARS = 300
_EMAIL = re.compile(r"[^\s@'\"<>]+@[^\s@'\"<>]+")
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class FieldReason:
    """One reason Personio gave, optionally for one field of the request."""

    reason: str
    field: str | None = None
    context: dict[str, Any] | None = None


class PersonioError(Exception):
    """Root of every error the Personio client raises."""

    retryable: bool = False
    # A class constant in most subclasses, set per instance by FeedError (so it must stay a
    # writable attribute here), and a read-only property in the three API errors that derive
    # it from Personio's answer: those overrides carry ``type: ignore[override]``, since mypy
    # does not let a property override a writable attribute (nothing assigns to those three).
    reason_code: str = "personio.error"


class PersonioTransportError(PersonioError):
    """The request did not get an HTTP answer (connection refused, reset, DNS, TLS)."""

    retryable = True
    reason_code = "personio.unreachable"

    def __init__(self, message: str, *, maybe_delivered: bool) -> None:
        super().__init__(message)
        # True when Personio may have received and processed the request before the
        # connection broke: an application POST must then be treated as possibly created.
        self.maybe_delivered = maybe_delivered


class PersonioTimeout(PersonioTransportError):
    reason_code = "personio.timeout"


class PersonioAPIError(PersonioError):
    """Personio answered with an error status."""

    status: int = 0
    reason_code = "personio.http_error"

    def __init__(self, status: int, path: str, reasons: tuple[FieldReason, ...] = (), detail: str | None = None) -> None:
        self.status = status
        self.path = path
        self.reasons = reasons
        self.detail = detail
        codes = ", ".join(r.reason if r.field is None else f"{r.field}: {r.reason}" for r in reasons)
        super().__init__(f"Personio answered {status} to POST {path}" + (f" ({codes})" if codes else ""))

    @property
    def primary_reason(self) -> FieldReason | None:
        return self.reasons[0] if self.reasons else None

    @property
    def field(self) -> str | None:
        primary = self.primary_reason
        return primary.field if primary else None

    def has_reason(self, *codes: str) -> bool:
        return any(r.reason in codes for r in self.reasons)

    @property
    def safe_detail(self) -> str | None:
        """Personio's own explanation, bounded and without email addresses (no candidate data)."""
        return bounded_detail(self.detail)

    @classmethod
    def from_response(cls, response: requests.Response, path: str) -> PersonioAPIError:
        """Classify one error response into the most specific subclass."""
        status = response.status_code
        reasons, detail = _parse_error_body(response)
        codes = {r.reason for r in reasons}
        if status == 429:
            return PersonioRateLimited(status, path, reasons, detail, retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            return PersonioServerError(status, path, reasons, detail)
        if status == 401:
            return PersonioUnauthorized(status, path, reasons, detail)
        if status == 403 or (400 <= status < 500 and any(is_feature_code(code) for code in codes)):
            # Personio also sends the feature codes with 400: the plan, not the candidate.
            return PersonioFeatureDisabled(status, path, reasons, detail)
        if status == 413:
            return PersonioPayloadTooLarge(status, path, reasons, detail)
        if status == 422:
            return PersonioUnprocessable(status, path, reasons, detail)
        if status == 400 and codes & APPLICANT_EXISTS_CODES:
            return PersonioApplicantExists(status, path, reasons, detail)
        if status == 400 and "errors.posting-validation.channel-not-found" in codes:
            return PersonioChannelNotFound(status, path, reasons, detail)
        if status in (400, 404, 409):
            return PersonioValidationError(status, path, reasons, detail)
        if status == 408:
            return PersonioServerError(status, path, reasons, detail)
        return PersonioValidationError(status, path, reasons, detail)


class PersonioRateLimited(PersonioAPIError):
    """429: the company's budget is spent; Personio locks it out (60 s unless told otherwise)."""

    retryable = True
    reason_code = "personio.rate_limited"

    def __init__(self, status: int, path: str, reasons: tuple[FieldReason, ...] = (), detail: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(status, path, reasons, detail)
        self.retry_after = retry_after


class PersonioServerError(PersonioAPIError):
    retryable = True
    reason_code = "personio.server_error"


class PersonioUnauthorized(PersonioAPIError):
    """401: the access token and/or company ID were not recognised."""

    reason_code = "personio.unauthorized"


class PersonioFeatureDisabled(PersonioAPIError):
    """403: the company's plan lacks recruiting or the recruiting API."""

    @property
    def reason_code(self) -> str:  # type: ignore[override]  # computed; see PersonioError
        for code in ("feature.public-api.disabled", "feature.recruiting.disabled"):
            if self.has_reason(code) or (self.detail and code in self.detail):
                return code
        if any(code == "feature.recruiting.disabled" or code.startswith("feature.recruiting") for code in (r.reason for r in self.reasons)):
            return "feature.recruiting.disabled"
        return "feature.public-api.disabled"


class PersonioPayloadTooLarge(PersonioAPIError):
    reason_code = "errors.file-too-big"


class PersonioUnprocessable(PersonioAPIError):
    @property
    def reason_code(self) -> str:  # type: ignore[override]  # computed; see PersonioError
        primary = self.primary_reason
        # Without a reason code a 422 says nothing about the file type: a generic refusal.
        return primary.reason if primary else UNPROCESSABLE_CODE


class PersonioValidationError(PersonioAPIError):
    """400: Personio refused the application; ``reasons`` says which field and why."""

    @property
    def reason_code(self) -> str:  # type: ignore[override]  # computed; see PersonioError
        primary = self.primary_reason
        return primary.reason if primary else BAD_REQUEST_CODE


class PersonioApplicantExists(PersonioValidationError):
    """This email already has an application for this job (one per email per job)."""

    reason_code = "errors.applicant-already-exists"


class PersonioChannelNotFound(PersonioValidationError):
    reason_code = "errors.posting-validation.channel-not-found"


def is_feature_code(code: str) -> bool:
    return code in FEATURE_CODES or code.startswith("feature.")


def bounded_detail(detail: str | None) -> str | None:
    """Personio's detail text fit for a recruiter message: one line, bounded, emails removed."""
    if not detail:
        return None
    text = _EMAIL.sub("[email]", " ".join(detail.split()))
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 1].rstrip() + "…"
    return text or None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), clamped."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _parse_error_body(response: requests.Response) -> tuple[tuple[FieldReason, ...], str | None]:
    """Read Personio's error shapes: field errors, generic errors, and the legacy ``error``."""
    try:
        body = response.json()
    except ValueError:
        return (), None
    if not isinstance(body, dict):
        return (), None
    reasons: list[FieldReason] = []
    details: list[str] = []
    for item in body.get("errors") or []:
        if not isinstance(item, dict):
            continue
        field = item.get("field") if isinstance(item.get("field"), str) else None
        nested = item.get("errors")
        if isinstance(nested, list):
            for error in nested:
                if isinstance(error, dict) and isinstance(error.get("reason"), str):
                    context = error.get("context") if isinstance(error.get("context"), dict) else None
                    reasons.append(FieldReason(reason=error["reason"], field=field, context=context))
        elif isinstance(item.get("reason"), str):
            reasons.append(FieldReason(reason=item["reason"], field=field))
        detail = item.get("detail")
        if isinstance(detail, str):
            details.append(detail)
            if is_feature_code(detail) or detail.startswith("errors."):
                reasons.append(FieldReason(reason=detail))
    legacy = body.get("error")
    if isinstance(legacy, dict):
        if isinstance(legacy.get("reason"), str):
            reasons.append(FieldReason(reason=legacy["reason"]))
        if isinstance(legacy.get("message"), str):
            details.append(legacy["message"])
    elif isinstance(legacy, str):
        details.append(legacy)
    if isinstance(body.get("message"), str):
        details.append(body["message"])
    for text in details:
        legacy_code = LEGACY_WORDINGS.get(" ".join(text.split()).lower().rstrip(".") + ".")
        if legacy_code is not None and all(r.reason != legacy_code for r in reasons):
            reasons.append(FieldReason(reason=legacy_code))
    return tuple(reasons), "; ".join(details) or None
