"""The sandbox's answers (and well-formed client requests) conform to Personio's OpenAPI spec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import requests

from sandbox import CompanyConfig, JobConfig, SandboxConfig, SandboxServer, start_sandbox
from sandbox.spec import load_spec
from tests.openapi import (
    SpecValidationRecorder,
    SpecViolation,
    validate_request,
    validate_response,
)

COMPANY, TOKEN, DOMAIN, JOB, CHANNEL = 100, "token-a", "acme.jobs.personio.de", 101, 7
APPS = "/v1/recruiting/applications"
DOCS = "/v1/recruiting/applications/documents"
HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "X-Company-ID": str(COMPANY),
    "X-Personio-App-ID": "PERSONIO_SYNC",
    "X-Personio-Partner-ID": "TALENTWUNDER",
}


def make_config(**overrides: Any) -> SandboxConfig:
    company = CompanyConfig(
        company_id=COMPANY,
        access_token=TOKEN,
        domain=DOMAIN,
        jobs=[JobConfig(id=JOB, name="Backend Engineer")],
        channel_ids=[CHANNEL],
        custom_attributes=["custom_attribute_5"],
    )
    values: dict[str, Any] = {"companies": [company], "rate_limit": 1000, "max_document_bytes": 256}
    values.update(overrides)
    return SandboxConfig(**values)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = start_sandbox(make_config())
    yield server
    server.stop()


def full_application(file_uuid: str, email: str = "alex@example.org") -> dict[str, Any]:
    return {
        "first_name": "Alex",
        "last_name": "Example",
        "email": email,
        "job_position_id": JOB,
        "recruiting_channel_id": CHANNEL,
        "external_posting_id": "ext-1",
        "message": "Sourced",
        "application_date": date.today().isoformat(),
        "phase": {"type": "system", "id": "unassigned"},
        "tags": ["sourced"],
        "files": [{"uuid": file_uuid, "original_filename": "cv.pdf", "category": "cv"}],
        "attributes": [
            {"id": "phone", "value": "+49 30 1234"},
            {"id": "gender", "value": "female"},
            {"id": "custom_attribute_5", "value": "x"},
        ],
    }


def upload(http: requests.Session, server: SandboxServer, filename: str = "cv.pdf",
           content: bytes = b"%PDF-1.4", headers: dict[str, str] | None = None) -> requests.Response:
    return http.post(
        server.url + DOCS,
        files={"file": (filename, content, "application/pdf")},
        headers=HEADERS if headers is None else headers,
    )


# ------------------------------------------------------------------ happy path


def test_upload_and_application_round_trip_conforms(
    sandbox: SandboxServer, http: requests.Session, recorder: SpecValidationRecorder
) -> None:
    document = upload(http, sandbox)
    created = http.post(sandbox.url + APPS, json=full_application(document.json()["uuid"]),
                        headers=HEADERS)

    assert (document.status_code, created.status_code) == (200, 201)
    recorder.assert_clean(min_exchanges=2)


@pytest.mark.parametrize("extension", ["ppt", "docx", "3gp", "tif"])
def test_every_upload_answer_conforms(
    sandbox: SandboxServer, http: requests.Session, recorder: SpecValidationRecorder,
    extension: str,
) -> None:
    assert upload(http, sandbox, f"file.{extension}").status_code == 200
    recorder.assert_clean()


def test_feed_request_and_answers_conform(
    sandbox: SandboxServer, http: requests.Session, recorder: SpecValidationRecorder
) -> None:
    first = http.get(sandbox.feed_url(DOMAIN, "en"))
    again = http.get(sandbox.feed_url(DOMAIN, "en"), headers={"If-None-Match": first.headers["ETag"]})

    assert (first.status_code, again.status_code) == (200, 304)
    recorder.assert_clean(min_exchanges=2)


# ------------------------------------------------------------------ error answers


def test_validation_errors_conform(
    sandbox: SandboxServer, http: requests.Session, recorder: SpecValidationRecorder
) -> None:
    # The probe and the invalid payloads break the request schema on purpose;
    # only the answers are under test here.
    recorder.validate_requests = False
    bad = full_application("00000000-0000-4000-8000-000000000000", email="nope")
    bad["attributes"].append({"id": "shoe_size", "value": "44"})

    answers = [
        http.post(sandbox.url + APPS, json={}, headers=HEADERS),
        http.post(sandbox.url + APPS, json=bad, headers=HEADERS),
        http.post(sandbox.url + APPS, data=b"{oops", headers={**HEADERS, "Content-Type": "application/json"}),
    ]

    assert [r.status_code for r in answers] == [400, 400, 400]
    recorder.assert_clean(min_exchanges=3)


def test_duplicate_answer_conforms(
    sandbox: SandboxServer, http: requests.Session, recorder: SpecValidationRecorder
) -> None:
    payload = {"first_name": "A", "last_name": "B", "email": "a@example.org", "job_position_id": JOB}
    http.post(sandbox.url + APPS, json=payload, headers=HEADERS)

    duplicate = http.post(sandbox.url + APPS, json=payload, headers=HEADERS)

    assert duplicate.status_code == 400
    assert duplicate.json()["errors"][0]["errors"][0]["reason"] == "errors.applicant-already-exists"
    recorder.assert_clean(min_exchanges=2)


@pytest.mark.parametrize("path", [APPS, DOCS])
def test_401_conforms(
    sandbox: SandboxServer, http: requests.Session, recorder: SpecValidationRecorder, path: str
) -> None:
    headers = {**HEADERS, "Authorization": "Bearer wrong"}
    if path == DOCS:
        response = upload(http, sandbox, headers=headers)
    else:
        response = http.post(sandbox.url + APPS, json={"first_name": "A", "last_name": "B",
                             "email": "a@example.org", "job_position_id": JOB}, headers=headers)

    assert response.status_code == 401
    recorder.assert_clean()


@pytest.mark.parametrize("flag", ["recruiting_enabled", "public_api_enabled"])
@pytest.mark.parametrize("path", [APPS, DOCS])
def test_403_conforms(
    http: requests.Session, recorder: SpecValidationRecorder, flag: str, path: str
) -> None:
    config = make_config()
    setattr(config.companies[0], flag, False)
    with start_sandbox(config) as server:
        if path == DOCS:
            response = upload(http, server)
        else:
            response = http.post(server.url + APPS, json={"first_name": "A", "last_name": "B",
                                 "email": "a@example.org", "job_position_id": JOB}, headers=HEADERS)

    assert response.status_code == 403
    recorder.assert_clean()


def test_413_and_422_conform(
    sandbox: SandboxServer, http: requests.Session, recorder: SpecValidationRecorder
) -> None:
    too_big = upload(http, sandbox, content=b"x" * 257)
    wrong_type = upload(http, sandbox, "virus.exe")
    recorder.validate_requests = False  # no "file" field: the request itself is invalid
    no_file = http.post(sandbox.url + DOCS, files={"other": ("a.pdf", b"x")}, headers=HEADERS)

    assert [r.status_code for r in (too_big, wrong_type, no_file)] == [413, 422, 422]
    # The missing-file answer mixes a field-error item and a generic item.
    assert {"field", "id"} <= {key for item in no_file.json()["errors"] for key in item}
    recorder.assert_clean(min_exchanges=3)


@pytest.mark.parametrize("retry_after", [False, True])
@pytest.mark.parametrize("path", [APPS, DOCS])
def test_429_conforms(
    http: requests.Session, recorder: SpecValidationRecorder, path: str, retry_after: bool
) -> None:
    config = make_config(rate_limit=1, send_retry_after=retry_after)
    with start_sandbox(config) as server:
        responses = [upload(http, server) if path == DOCS else
                     http.post(server.url + APPS, json={"first_name": "A", "last_name": "B",
                               "email": f"a{i}@example.org", "job_position_id": JOB},
                               headers=HEADERS)
                     for i in range(2)]

    assert responses[1].status_code == 429
    recorder.assert_clean(min_exchanges=2)


def test_injected_500_conforms_but_503_is_outside_the_spec(
    sandbox: SandboxServer, http: requests.Session, recorder: SpecValidationRecorder
) -> None:
    payload = {"first_name": "A", "last_name": "B", "email": "a@example.org", "job_position_id": JOB}
    sandbox.state.inject_fault(status=500)
    assert http.post(sandbox.url + APPS, json=payload, headers=HEADERS).status_code == 500
    recorder.assert_clean()

    # Personio documents no 503 for the v1 endpoints; clients must cope anyway,
    # and the validator must say so rather than wave it through.
    recorder.outside_spec_statuses.add(503)
    sandbox.state.inject_fault(status=503)
    response = http.post(sandbox.url + APPS, json=payload, headers=HEADERS)
    with pytest.raises(SpecViolation, match="503"):
        validate_response(response.request, response)


# ------------------------------------------------------- the validator bites


def _prepared(headers: dict[str, str], payload: Any) -> requests.PreparedRequest:
    return requests.Request("POST", "http://127.0.0.1:1" + APPS, headers=headers, json=payload).prepare()


def _response(status: int, body: bytes, content_type: str = "application/json") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers["Content-Type"] = content_type
    return response


VALID = {"first_name": "A", "last_name": "B", "email": "a@example.org", "job_position_id": 1}


def test_validator_accepts_a_well_formed_request() -> None:
    validate_request(_prepared(HEADERS, VALID))


def test_validator_accepts_a_400_mixing_field_and_generic_items() -> None:
    body = {"errors": [
        {"field": "email", "type": "x.FieldError",
         "errors": [{"reason": "errors.applicant-already-exists", "context": {}}]},
        {"id": "6f1c2b9e-0a52-4c1e-9d43-2a8f1f0e5b7c", "status": "400", "title": "Bad Request",
         "detail": "something else"},
    ]}

    validate_response(_prepared(HEADERS, VALID), _response(400, json.dumps(body).encode()))


@pytest.mark.parametrize(
    ("headers", "payload", "message"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, VALID, "X-Company-ID"),
        (HEADERS, {**VALID, "email": "not-an-email"}, "email"),
        (HEADERS, {**VALID, "job_position_id": "1"}, "integer"),
        (HEADERS, {k: v for k, v in VALID.items() if k != "last_name"}, "last_name"),
        (HEADERS, {**VALID, "files": [{"uuid": "not-a-uuid", "original_filename": "a", "category": "cv"}]},
         "uuid"),
    ],
    ids=["no-company-header", "bad-email", "string-job-id", "missing-last-name", "bad-file-uuid"],
)
def test_validator_rejects_requests_that_break_the_spec(
    headers: dict[str, str], payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecViolation, match=message):
        validate_request(_prepared(headers, payload))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"foo": "bar"}),
        (400, {"errors": [{"reason": "errors.applicant-already-exists"}]}),
        (403, {"errors": [{"id": "x", "detail": "feature.recruiting.disabled"}]}),
        (413, {"errors": []}),  # 413 is documented for documents only
    ],
    ids=["no-errors-key", "item-matches-no-variant", "generic-item-missing-keys", "undocumented-status"],
)
def test_validator_rejects_responses_that_break_the_spec(status: int, body: dict[str, Any]) -> None:
    with pytest.raises(SpecViolation):
        validate_response(_prepared(HEADERS, VALID), _response(status, json.dumps(body).encode()))


def test_validator_rejects_a_bad_upload_answer() -> None:
    prepared = requests.Request(
        "POST", "http://127.0.0.1:1" + DOCS, headers=HEADERS, files={"file": ("a.pdf", b"x")}
    ).prepare()
    body = {"uuid": "not-a-uuid", "size": "1", "mimetype": "x", "original_filename": "a.pdf",
            "extension": "exe"}

    with pytest.raises(SpecViolation):
        validate_response(prepared, _response(200, json.dumps(body).encode()))


def test_recorder_reports_violations_and_ignores_admin_paths(sandbox: SandboxServer) -> None:
    recorder = SpecValidationRecorder()
    with requests.Session() as session:
        recorder.attach(session)
        session.get(sandbox.url + "/_sandbox/stats")
        session.post(sandbox.url + APPS, json={}, headers=HEADERS)  # request breaks the spec

    assert len(recorder.exchanges) == 1
    with pytest.raises(AssertionError, match="required property"):
        recorder.assert_clean()


def test_spec_loads_once() -> None:
    assert load_spec() is load_spec()


def test_test_helpers_and_sandbox_self_check_share_one_spec_loader() -> None:
    import tests.openapi

    assert tests.openapi.load_spec is load_spec


# ------------------------------------------------------- sandbox self-check


def test_sandbox_self_validation_turns_off_spec_answers_into_500(
    http: requests.Session,
) -> None:
    payload = {"first_name": "A", "last_name": "B", "email": "a@example.org", "job_position_id": JOB}
    with start_sandbox(make_config(validate_against_openapi=True)) as server:
        ok = upload(http, server)
        created = http.post(server.url + APPS, json=payload, headers=HEADERS)
        server.state.inject_fault(status=503)
        off_spec = http.post(server.url + APPS, json={**payload, "email": "b@example.org"},
                             headers=HEADERS)

    assert (ok.status_code, created.status_code) == (200, 201)
    assert off_spec.status_code == 500
    assert "violates the OpenAPI spec" in off_spec.json()["errors"][0]["detail"]
