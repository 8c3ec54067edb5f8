"""personio.errors: one classification of every documented Personio answer."""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from typing import Any

import pytest
import requests

from personio import errors
from personio.errors import MAX_RETRY_AFTER, FieldReason, parse_retry_after
from tests.personio.answers import FIELD_REASONS_400

APPS = "/v1/recruiting/applications"
DOCS = "/v1/recruiting/applications/documents"
FIELD_ERROR_TYPE = "com.personio.recruiting.publicapi.validation.FieldError"


def response(status: int, body: Any = None, *, headers: dict[str, str] | None = None, raw: bytes | None = None) -> requests.Response:
    result = requests.Response()
    result.status_code = status
    if raw is not None:
        result._content = raw
    elif body is not None:
        result._content = json.dumps(body).encode()
        result.headers["Content-Type"] = "application/json"
    else:
        result._content = b""
    result.headers.update(headers or {})
    return result


def field_error(field: str, *reasons: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    items = [{"reason": r, **({"context": context} if context else {})} for r in reasons]
    return {"errors": [{"field": field, "type": FIELD_ERROR_TYPE, "errors": items}]}


def generic_error(status: int, detail: str) -> dict[str, Any]:
    return {"errors": [{"id": "5b2b6c1e-0000-4000-8000-000000000000", "status": str(status), "title": "x", "detail": detail}]}


def classify(status: int, body: Any = None, path: str = APPS, **kwargs: Any) -> errors.PersonioAPIError:
    return errors.PersonioAPIError.from_response(response(status, body, **kwargs), path)


# --------------------------------------------------------------- 400


@pytest.mark.parametrize(("code", "field"), FIELD_REASONS_400)
def test_each_400_reason_is_a_permanent_validation_error_naming_field_and_code(code: str, field: str) -> None:
    error = classify(400, field_error(field, code))

    assert type(error) is errors.PersonioValidationError
    assert error.retryable is False
    assert error.reason_code == code
    assert error.field == field
    assert error.status == 400
    assert error.reasons == (FieldReason(reason=code, field=field),)
    assert str(error) == f"Personio answered 400 to POST {APPS} ({field}: {code})"


@pytest.mark.parametrize("code", ["errors.applicant-already-exists", "errors.applicant-exists"])
def test_duplicate_in_both_spellings_is_applicant_exists(code: str) -> None:
    error = classify(400, field_error("email", code, context={"job_position_id": 1}))

    assert isinstance(error, errors.PersonioApplicantExists)
    assert isinstance(error, errors.PersonioValidationError)
    assert error.retryable is False
    # The old spelling is normalised: callers match one code.
    assert error.reason_code == "errors.applicant-already-exists"
    assert error.field == "email"
    assert error.reasons[0].context == {"job_position_id": 1}


def test_duplicate_wins_over_other_reasons_in_the_same_answer() -> None:
    body = {"errors": field_error("tags", "errors.attribute-validation.invalid-type")["errors"] + field_error("email", "errors.applicant-already-exists")["errors"]}

    assert isinstance(classify(400, body), errors.PersonioApplicantExists)


def test_channel_not_found_has_its_own_class() -> None:
    error = classify(400, field_error("recruiting_channel_id", "errors.posting-validation.channel-not-found"))

    assert isinstance(error, errors.PersonioChannelNotFound)
    assert error.retryable is False
    assert error.reason_code == "errors.posting-validation.channel-not-found"
    assert error.field == "recruiting_channel_id"


def test_400_without_body_is_a_bad_request() -> None:
    error = classify(400)

    assert type(error) is errors.PersonioValidationError
    assert error.reason_code == "personio.bad_request"
    assert error.field is None and error.primary_reason is None


def test_400_generic_item_with_an_error_code_as_detail() -> None:
    error = classify(400, generic_error(400, "errors.job-position.not-published"))

    assert error.reason_code == "errors.job-position.not-published"
    assert error.detail == "errors.job-position.not-published"


def test_several_field_errors_are_all_kept_in_order() -> None:
    body = {
        "errors": [
            {"field": "first_name", "errors": [{"reason": "errors.attribute-validation.required-attribute"}]},
            {"field": "email", "errors": [{"reason": "errors.attribute-validation.invalid-email-format"}, {"reason": "errors.attribute-validation.required-attribute"}]},
        ]
    }

    error = classify(400, body)

    assert [(r.field, r.reason) for r in error.reasons] == [
        ("first_name", "errors.attribute-validation.required-attribute"),
        ("email", "errors.attribute-validation.invalid-email-format"),
        ("email", "errors.attribute-validation.required-attribute"),
    ]
    assert error.has_reason("errors.attribute-validation.invalid-email-format")
    assert not error.has_reason("errors.applicant-already-exists")


def test_legacy_error_shapes_are_understood() -> None:
    # The top-level ``error.reason`` one client checks, and the legacy endpoint's message.
    error = classify(400, {"success": False, "error": {"reason": "errors.applicant-exists", "message": "Applicant already applied to this position."}})

    assert isinstance(error, errors.PersonioApplicantExists)
    assert error.detail == "Applicant already applied to this position."


def test_item_with_reason_but_no_nested_errors() -> None:
    error = classify(400, {"errors": [{"field": "email", "reason": "errors.attribute-validation.invalid-email-format"}]})

    assert error.reason_code == "errors.attribute-validation.invalid-email-format"
    assert error.field == "email"


@pytest.mark.parametrize("raw", [b"<html>Bad Gateway</html>", b"[1, 2]", b"null", b'{"errors": "nope"}', b'{"errors": [1, "x", {"errors": [2]}]}'])
def test_unparseable_or_odd_bodies_never_crash(raw: bytes) -> None:
    error = classify(400, raw=raw)

    assert type(error) is errors.PersonioValidationError
    assert error.reasons == ()


def test_message_carries_codes_but_not_personio_detail_text() -> None:
    # Details may quote candidate data (an email); only codes go into the message.
    body = {"errors": [{"field": "email", "errors": [{"reason": "errors.applicant-already-exists", "context": {"email": "alex@example.org"}}]}, {"detail": "alex@example.org applied before"}]}

    error = classify(400, body)

    assert "alex@example.org" not in str(error)
    assert "alex@example.org" not in repr(error)


# --------------------------------------------------------- 401/403/413/422


def test_401_is_unauthorized_and_permanent() -> None:
    error = classify(401, generic_error(401, "The API token and/or company id was not recognized."))

    assert isinstance(error, errors.PersonioUnauthorized)
    assert error.retryable is False
    assert error.reason_code == "personio.unauthorized"


@pytest.mark.parametrize("code", ["feature.recruiting.disabled", "feature.public-api.disabled"])
def test_403_names_the_missing_feature_generic_shape(code: str) -> None:
    error = classify(403, generic_error(403, code))

    assert isinstance(error, errors.PersonioFeatureDisabled)
    assert error.retryable is False
    assert error.reason_code == code


@pytest.mark.parametrize("code", ["feature.recruiting.disabled", "feature.public-api.disabled"])
def test_403_names_the_missing_feature_field_shape(code: str) -> None:
    error = classify(403, {"errors": [{"errors": [{"reason": code}]}]})

    assert error.reason_code == code


def test_403_feature_code_inside_a_longer_detail() -> None:
    error = classify(403, generic_error(403, "Forbidden: feature.recruiting.disabled for company 1"))

    assert error.reason_code == "feature.recruiting.disabled"


def test_403_without_body_defaults_to_missing_api_access() -> None:
    assert classify(403).reason_code == "feature.public-api.disabled"


def test_413_is_file_too_big_and_permanent() -> None:
    error = classify(413, field_error("file", "errors.file-too-big"), path=DOCS)

    assert isinstance(error, errors.PersonioPayloadTooLarge)
    assert error.retryable is False
    assert error.reason_code == "errors.file-too-big"
    assert error.path == DOCS


def test_422_takes_its_reason_or_is_a_generic_refusal() -> None:
    with_reason = classify(422, field_error("file", "errors.invalid-file-type"), path=DOCS)
    without = classify(422, path=DOCS)

    assert isinstance(with_reason, errors.PersonioUnprocessable) and isinstance(without, errors.PersonioUnprocessable)
    assert with_reason.reason_code == "errors.invalid-file-type"
    # No reason code says nothing about the file type.
    assert without.reason_code == "personio.unprocessable"
    assert not with_reason.retryable


# ----------------------------------------------------------- 429 and 5xx


def test_429_without_retry_after() -> None:
    error = classify(429)

    assert isinstance(error, errors.PersonioRateLimited)
    assert error.retryable is True
    assert error.retry_after is None
    assert error.reason_code == "personio.rate_limited"


def test_429_with_retry_after_seconds() -> None:
    error = classify(429, headers={"Retry-After": "17"})

    assert isinstance(error, errors.PersonioRateLimited)
    assert error.retry_after == 17.0


def test_429_with_retry_after_http_date() -> None:
    error = classify(429, headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)})

    assert isinstance(error, errors.PersonioRateLimited)
    assert error.retry_after == pytest.approx(120, abs=2)


def test_429_with_garbage_retry_after() -> None:
    error = classify(429, headers={"Retry-After": "soon-ish"})

    assert isinstance(error, errors.PersonioRateLimited)
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_and_408_are_retryable(status: int) -> None:
    error = classify(status, generic_error(status, "boom") if status == 500 else None)

    assert isinstance(error, errors.PersonioServerError)
    assert error.retryable is True
    assert error.reason_code == "personio.server_error"


def test_5xx_with_html_body_is_still_a_server_error() -> None:
    error = classify(503, raw=b"<html><body>Service Unavailable</body></html>")

    assert isinstance(error, errors.PersonioServerError)


@pytest.mark.parametrize("status", [301, 302, 404, 405, 409, 410, 418])
def test_other_statuses_are_permanent(status: int) -> None:
    error = classify(status)

    assert isinstance(error, errors.PersonioValidationError)
    assert error.retryable is False


# ------------------------------------------------------ transport errors


def test_transport_errors_are_retryable_and_say_whether_they_may_have_arrived() -> None:
    refused = errors.PersonioTransportError("could not reach Personio", maybe_delivered=False)
    timeout = errors.PersonioTimeout("Personio did not answer in time", maybe_delivered=True)

    assert refused.retryable and timeout.retryable
    assert refused.maybe_delivered is False and timeout.maybe_delivered is True
    assert refused.reason_code == "personio.unreachable"
    assert timeout.reason_code == "personio.timeout"
    assert isinstance(timeout, errors.PersonioTransportError) and isinstance(timeout, errors.PersonioError)


def test_only_429_5xx_and_transport_are_retryable() -> None:
    retryable = {cls for cls in (errors.PersonioRateLimited, errors.PersonioServerError, errors.PersonioTransportError, errors.PersonioTimeout) if cls.retryable}
    permanent = {cls for cls in (errors.PersonioUnauthorized, errors.PersonioFeatureDisabled, errors.PersonioPayloadTooLarge, errors.PersonioUnprocessable, errors.PersonioValidationError, errors.PersonioApplicantExists, errors.PersonioChannelNotFound) if not cls.retryable}

    assert len(retryable) == 4
    assert len(permanent) == 7


# --------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("-5", 0.0),
        ("999999", MAX_RETRY_AFTER),
        ("nan", None),
        ("inf", MAX_RETRY_AFTER),
        ("tomorrow", None),
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_relative_to_now() -> None:
    now = 1_700_000_000.0

    assert parse_retry_after(formatdate(now + 45, usegmt=True), now=now) == pytest.approx(45.0)
    assert parse_retry_after(formatdate(now - 45, usegmt=True), now=now) == 0.0
    assert parse_retry_after(formatdate(now + 10 * 3600, usegmt=True), now=now) == MAX_RETRY_AFTER
