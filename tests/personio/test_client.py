"""personio.client: what it sends, and how it classifies every answer.

Two set-ups: the in-process Personio stand-in over real HTTP, and ``responses`` mocks
for answers the stand-in cannot produce (Retry-After as a date, connect timeouts).
Every request the client sends is validated against Personio's OpenAPI spec.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import traceback
from collections.abc import Iterator
from datetime import date
from email.utils import formatdate
from typing import Any

import pytest
import requests
import responses

from personio.client import (
    APPLICATIONS_PATH,
    DOCUMENTS_PATH,
    PersonioClient,
    PersonioCredentials,
    UploadedDocument,
)
from personio.errors import (
    DOCUMENTED_REASON_CODES,
    PersonioAPIError,
    PersonioApplicantExists,
    PersonioChannelNotFound,
    PersonioError,
    PersonioFeatureDisabled,
    PersonioPayloadTooLarge,
    PersonioRateLimited,
    PersonioServerError,
    PersonioTimeout,
    PersonioTransportError,
    PersonioUnauthorized,
    PersonioUnprocessable,
    PersonioValidationError,
)
from sandbox import CompanyConfig, JobConfig, SandboxConfig, SandboxServer
from tests.openapi import SpecValidationRecorder, validate_request

COMPANY = 4711
TOKEN = "tok-CANARY-9f8e7d6c5b4a"
DOMAIN = "acme.jobs.personio.de"
JOB, UNPUBLISHED_JOB, CHANNEL = 501, 502, 77
APP_ID, PARTNER_ID = "PERSONIO_SYNC", "TALENTWUNDER"
MOCK_BASE = "https://api.personio.de"


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    company = CompanyConfig(
        company_id=COMPANY,
        access_token=TOKEN,
        domain=DOMAIN,
        jobs=[JobConfig(id=JOB, name="Backend Engineer"), JobConfig(id=UNPUBLISHED_JOB, name="Closed", published=False)],
        channel_ids=[CHANNEL],
        custom_attributes=["custom_attribute_1"],
    )
    return SandboxConfig(companies=[company], rate_limit=50, rate_window=2.0, lockout=2.0, max_document_bytes=4096)


def make_client(http: requests.Session, base_url: str, *, token: str = TOKEN, company: int = COMPANY, timeout: tuple[float, float] = (2.0, 5.0)) -> PersonioClient:
    return PersonioClient(
        http,
        base_url=base_url,
        credentials=PersonioCredentials(company, token),
        app_id=APP_ID,
        partner_id=PARTNER_ID,
        timeout=timeout,
    )


@pytest.fixture
def client(http: requests.Session, sandbox: SandboxServer) -> PersonioClient:
    return make_client(http, sandbox.url + "/")


def application(email: str = "alex@example.org", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"first_name": "Alex", "last_name": "Example", "email": email, "job_position_id": JOB}
    body.update(extra)
    return body


def assert_token_hidden(error: BaseException) -> None:
    text = "".join(traceback.format_exception(error))
    assert TOKEN not in str(error)
    assert TOKEN not in repr(error)
    assert TOKEN not in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ============================================================ the stand-in


def test_upload_document_sends_multipart_field_file_and_returns_the_uuid(client: PersonioClient, sandbox: SandboxServer, recorder: SpecValidationRecorder) -> None:
    # given
    content = b"%PDF-1.4 a tiny cv"

    # when
    uploaded = client.upload_document(filename="cv.pdf", content=content, mimetype="application/pdf")

    # then
    assert isinstance(uploaded, UploadedDocument)
    assert uploaded.size == len(content)
    assert uploaded.mimetype == "application/pdf"
    assert uploaded.original_filename == "cv.pdf"
    assert uploaded.extension == "pdf"
    [stored] = sandbox.state.documents(COMPANY)
    assert stored["uuid"] == uploaded.uuid
    assert stored["original_filename"] == "cv.pdf"
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()
    recorder.assert_clean(min_exchanges=1)


def test_requests_carry_bearer_company_and_app_headers(client: PersonioClient, http: requests.Session) -> None:
    # given: a hook that keeps the prepared requests
    sent: list[requests.PreparedRequest] = []
    http.hooks["response"].append(lambda response, *a, **k: sent.append(response.request))

    # when
    uploaded = client.upload_document(filename="cv.pdf", content=b"%PDF-1.4")
    client.create_application(application(files=[{"uuid": uploaded.uuid, "original_filename": "cv.pdf", "category": "cv"}]))

    # then
    assert len(sent) == 2
    for request in sent:
        assert request.method == "POST"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["X-Company-ID"] == str(COMPANY)
        assert request.headers["X-Personio-App-ID"] == APP_ID
        assert request.headers["X-Personio-Partner-ID"] == PARTNER_ID
        assert request.headers["Accept"] == "application/json"
    upload_request, application_request = sent
    assert upload_request.url.endswith(DOCUMENTS_PATH)
    assert upload_request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'Content-Disposition: form-data; name="file"; filename="cv.pdf"' in upload_request.body
    assert application_request.url.endswith(APPLICATIONS_PATH)
    assert application_request.headers["Content-Type"] == "application/json"
    assert json.loads(application_request.body)["files"][0]["uuid"] == uploaded.uuid


def test_create_application_records_exactly_the_json_sent(client: PersonioClient, sandbox: SandboxServer, recorder: SpecValidationRecorder) -> None:
    # given: a body using every optional field
    uploaded = client.upload_document(filename="cv.pdf", content=b"%PDF-1.4")
    body = application(
        recruiting_channel_id=CHANNEL,
        message="Sourced via sourcing tool",
        application_date=date.today().isoformat(),
        tags=["sourced"],
        files=[{"uuid": uploaded.uuid, "original_filename": "cv.pdf", "category": "cv"}],
        attributes=[{"id": "phone", "value": "+49 30 1234"}, {"id": "custom_attribute_1", "value": "x"}],
    )

    # when
    result = client.create_application(body)

    # then
    assert result is None
    [stored] = sandbox.state.applications(COMPANY)
    assert stored["payload"] == body
    assert stored["recruiting_channel_id"] == CHANNEL
    assert stored["file_uuids"] == [uploaded.uuid]
    recorder.assert_clean(min_exchanges=2)


def test_base_url_without_trailing_slash_works_too(http: requests.Session, sandbox: SandboxServer) -> None:
    make_client(http, sandbox.url).create_application(application())

    assert len(sandbox.state.applications()) == 1


def test_client_exposes_company_but_not_token(client: PersonioClient) -> None:
    assert client.company_id == COMPANY
    assert TOKEN not in repr(PersonioCredentials(COMPANY, TOKEN))


def test_duplicate_from_the_stand_in(client: PersonioClient, sandbox: SandboxServer, recorder: SpecValidationRecorder) -> None:
    client.create_application(application())

    with pytest.raises(PersonioApplicantExists) as caught:
        client.create_application(application(email="ALEX@example.org"))

    assert caught.value.field == "email"
    assert caught.value.retryable is False
    assert len(sandbox.state.applications()) == 1
    recorder.assert_clean(min_exchanges=2)


def test_unknown_channel_from_the_stand_in(client: PersonioClient, recorder: SpecValidationRecorder) -> None:
    with pytest.raises(PersonioChannelNotFound) as caught:
        client.create_application(application(recruiting_channel_id=999))

    assert caught.value.field == "recruiting_channel_id"
    recorder.assert_clean()


@pytest.mark.parametrize(
    ("extra", "code", "field"),
    [
        ({"job_position_id": UNPUBLISHED_JOB}, "errors.job-position.not-published", "job_position_id"),
        ({"email": "not-an-email"}, "errors.attribute-validation.invalid-email-format", "email"),
        ({"first_name": "  "}, "errors.attribute-validation.required-attribute", "first_name"),
        ({"application_date": "2999-01-01"}, "errors.date-validation.date-in-the-future", "application_date"),
        ({"application_date": "01.02.2020"}, "errors.attribute-validation.invalid-date-format", "application_date"),
        ({"phase": {"type": "system", "id": "hired"}}, "errors.phase-validation.invalid-system-phase", "phase"),
        ({"files": [{"uuid": "00000000-0000-4000-8000-000000000000", "original_filename": "cv.pdf", "category": "cv"}]}, "errors.file-validation.file-not-exists", "files"),
        ({"attributes": [{"id": "custom_attribute_404", "value": "x"}]}, "errors.attribute-validation.unknown", "custom_attribute_404"),
        ({"attributes": [{"id": "gender", "value": "robot"}]}, "errors.attribute-validation.unknown-attribute-option", "gender"),
    ],
)
def test_validation_answers_from_the_stand_in(client: PersonioClient, sandbox: SandboxServer, recorder: SpecValidationRecorder, extra: dict[str, Any], code: str, field: str) -> None:
    recorder.validate_requests = False  # some cases (bad email, dd.mm.yyyy date) break the spec on purpose
    with pytest.raises(PersonioValidationError) as caught:
        client.create_application(application(**extra))

    error = caught.value
    assert type(error) is PersonioValidationError
    assert (error.status, error.reason_code, error.field, error.retryable) == (400, code, field, False)
    assert sandbox.state.applications() == []
    assert_token_hidden(error)


def test_wrong_token_is_401(http: requests.Session, sandbox: SandboxServer, recorder: SpecValidationRecorder) -> None:
    client = make_client(http, sandbox.url, token="tok-WRONG")

    with pytest.raises(PersonioUnauthorized) as caught:
        client.create_application(application())

    assert caught.value.status == 401 and not caught.value.retryable
    assert "tok-WRONG" not in "".join(traceback.format_exception(caught.value))
    recorder.assert_clean()


@pytest.mark.parametrize(("change", "code"), [({"recruiting_enabled": False}, "feature.recruiting.disabled"), ({"public_api_enabled": False}, "feature.public-api.disabled")])
def test_missing_feature_is_403_with_its_code(client: PersonioClient, sandbox: SandboxServer, recorder: SpecValidationRecorder, change: dict[str, bool], code: str) -> None:
    sandbox.state.patch_company(COMPANY, change)

    with pytest.raises(PersonioFeatureDisabled) as caught:
        client.upload_document(filename="cv.pdf", content=b"%PDF")

    assert caught.value.status == 403
    assert caught.value.reason_code == code
    assert not caught.value.retryable
    recorder.assert_clean()


def test_document_over_the_limit_is_413(client: PersonioClient, recorder: SpecValidationRecorder) -> None:
    with pytest.raises(PersonioPayloadTooLarge) as caught:
        client.upload_document(filename="cv.pdf", content=b"x" * 5000)

    assert caught.value.reason_code == "errors.file-too-big"
    assert not caught.value.retryable
    recorder.assert_clean()


def test_refused_file_type_is_422(client: PersonioClient, sandbox: SandboxServer, recorder: SpecValidationRecorder) -> None:
    with pytest.raises(PersonioUnprocessable) as caught:
        client.upload_document(filename="tool.exe", content=b"MZ")

    assert caught.value.reason_code == "errors.invalid-file-type"
    assert sandbox.state.documents() == []
    # The request itself is fine by the spec; only the file type is refused.
    recorder.assert_clean()


def test_budget_exhausted_is_429_without_retry_after(client: PersonioClient, sandbox: SandboxServer, recorder: SpecValidationRecorder) -> None:
    sandbox.state.update_settings(rate_limit=1)
    client.create_application(application())

    with pytest.raises(PersonioRateLimited) as caught:
        client.create_application(application(email="b@example.org"))

    assert caught.value.retryable is True
    assert caught.value.retry_after is None
    recorder.assert_clean(min_exchanges=2)


def test_429_retry_after_from_the_stand_in_is_honoured(client: PersonioClient, sandbox: SandboxServer) -> None:
    sandbox.state.update_settings(rate_limit=1, send_retry_after=True, lockout=30.0)
    client.create_application(application())

    with pytest.raises(PersonioRateLimited) as caught:
        client.create_application(application(email="b@example.org"))

    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_from_the_stand_in_are_retryable(client: PersonioClient, sandbox: SandboxServer, recorder: SpecValidationRecorder, status: int) -> None:
    recorder.outside_spec_statuses.add(503)  # undocumented for v1, but clients must cope
    sandbox.state.inject_fault(company_id=COMPANY, status=status, endpoint="applications")

    with pytest.raises(PersonioServerError) as caught:
        client.create_application(application())

    assert caught.value.status == status and caught.value.retryable
    assert sandbox.state.applications() == []


def test_connection_refused_was_certainly_not_delivered(http: requests.Session) -> None:
    client = make_client(http, f"http://127.0.0.1:{free_port()}")

    with pytest.raises(PersonioTransportError) as caught:
        client.create_application(application())

    error = caught.value
    assert type(error) is PersonioTransportError
    assert error.retryable is True
    assert error.maybe_delivered is False
    assert error.reason_code == "personio.unreachable"
    assert isinstance(error.__cause__, requests.ConnectionError)
    assert_token_hidden(error)


def test_connection_dropped_before_processing_may_have_been_delivered(client: PersonioClient, sandbox: SandboxServer) -> None:
    sandbox.state.inject_fault(company_id=COMPANY, kind="drop", endpoint="applications")

    with pytest.raises(PersonioTransportError) as caught:
        client.create_application(application())

    # The client cannot know the request was not processed: it got no answer after sending.
    assert caught.value.maybe_delivered is True
    assert sandbox.state.applications() == []


def test_connection_dropped_after_commit_may_have_been_delivered(client: PersonioClient, sandbox: SandboxServer) -> None:
    sandbox.state.inject_fault(company_id=COMPANY, kind="drop_after_commit", endpoint="applications")

    with pytest.raises(PersonioTransportError) as caught:
        client.create_application(application())

    assert caught.value.maybe_delivered is True
    assert len(sandbox.state.applications()) == 1


def test_read_timeout_may_have_been_delivered(http: requests.Session, sandbox: SandboxServer) -> None:
    client = make_client(http, sandbox.url, timeout=(2.0, 0.2))
    sandbox.state.inject_fault(company_id=COMPANY, kind="delay_after_commit", endpoint="applications", delay=0.6)

    with pytest.raises(PersonioTimeout) as caught:
        client.create_application(application())

    assert caught.value.maybe_delivered is True
    assert caught.value.reason_code == "personio.timeout"
    assert len(sandbox.state.applications()) == 1
    assert_token_hidden(caught.value)


@pytest.fixture
def probing(recorder: SpecValidationRecorder) -> SpecValidationRecorder:
    """The probe's empty body is invalid on purpose: that one request is not reported."""
    recorder.allow_credential_probe = True
    return recorder


def test_probe_accepts_good_credentials_and_creates_nothing(http: requests.Session, sandbox: SandboxServer, probing: SpecValidationRecorder) -> None:
    client = make_client(http, sandbox.url)

    assert client.probe_credentials() is None

    assert sandbox.state.applications() == []
    stats = sandbox.state.stats()["companies"][str(COMPANY)]
    assert stats["statuses"] == {"400": 1}
    probing.assert_clean()


def test_probe_raises_for_a_wrong_token(http: requests.Session, sandbox: SandboxServer, probing: SpecValidationRecorder) -> None:
    with pytest.raises(PersonioUnauthorized):
        make_client(http, sandbox.url, token="tok-WRONG").probe_credentials()


def test_probe_raises_when_recruiting_is_disabled(client: PersonioClient, sandbox: SandboxServer, probing: SpecValidationRecorder) -> None:
    sandbox.state.patch_company(COMPANY, {"recruiting_enabled": False})

    with pytest.raises(PersonioFeatureDisabled) as caught:
        client.probe_credentials()

    assert caught.value.reason_code == "feature.recruiting.disabled"


# ============================================================ responses mocks


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def mock_client() -> Iterator[PersonioClient]:
    with requests.Session() as session:
        yield make_client(session, MOCK_BASE, timeout=(3.0, 7.0))


def test_mocked_requests_conform_and_use_the_timeouts(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    # given
    mocked.post(MOCK_BASE + DOCUMENTS_PATH, json={"uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "size": 3, "mimetype": "application/pdf", "original_filename": "cv.pdf", "extension": "pdf"})
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=201)
    body = application(files=[{"uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "original_filename": "cv.pdf", "category": "cv"}], attributes=[{"id": "gender", "value": "diverse"}])

    # when
    uploaded = mock_client.upload_document(filename="cv.pdf", content=b"%PD", mimetype="application/pdf")
    mock_client.create_application(body)

    # then
    assert uploaded.uuid == "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    upload_call, application_call = mocked.calls
    for call in mocked.calls:
        validate_request(call.request)
        assert call.request.req_kwargs["timeout"] == (3.0, 7.0)
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.request.headers["X-Company-ID"] == str(COMPANY)
        assert call.request.headers["X-Personio-App-ID"] == APP_ID
    assert b'name="file"; filename="cv.pdf"' in upload_call.request.body
    assert b"Content-Type: application/pdf" in upload_call.request.body
    assert json.loads(application_call.request.body) == body


def test_partner_header_is_left_out_when_not_configured(mocked: responses.RequestsMock) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=201)
    with requests.Session() as session:
        PersonioClient(session, base_url=MOCK_BASE, credentials=PersonioCredentials(COMPANY, TOKEN), app_id=APP_ID).create_application(application())

    assert "X-Personio-Partner-ID" not in mocked.calls[0].request.headers
    validate_request(mocked.calls[0].request)


def _field(field: str, reason: str) -> dict[str, Any]:
    return {"errors": [{"field": field, "type": "com.personio.recruiting.publicapi.validation.FieldError", "errors": [{"reason": reason}]}]}


def _generic(status: int, detail: str) -> dict[str, Any]:
    return {"errors": [{"id": "8d1c4e6a-0000-4000-8000-000000000000", "status": str(status), "title": "t", "detail": detail}]}


# The 400 reasons without a class of their own (duplicates and channels have one; the
# feature codes come with 403).
REASON_CODES_400 = [
    code
    for code in DOCUMENTED_REASON_CODES
    if code not in ("errors.applicant-already-exists", "errors.posting-validation.channel-not-found") and not code.startswith("feature.")
]

# (path, status, body, headers, class, retryable, reason_code)
DOCUMENTED_ANSWERS: list[tuple[str, int, Any, dict[str, str], type[PersonioAPIError], bool, str]] = [
    *[(APPLICATIONS_PATH, 400, _field("some_field", code), {}, PersonioValidationError, False, code) for code in REASON_CODES_400],
    (APPLICATIONS_PATH, 400, _field("email", "errors.applicant-already-exists"), {}, PersonioApplicantExists, False, "errors.applicant-already-exists"),
    (APPLICATIONS_PATH, 400, _field("email", "errors.applicant-exists"), {}, PersonioApplicantExists, False, "errors.applicant-already-exists"),
    (APPLICATIONS_PATH, 400, _field("recruiting_channel_id", "errors.posting-validation.channel-not-found"), {}, PersonioChannelNotFound, False, "errors.posting-validation.channel-not-found"),
    (APPLICATIONS_PATH, 401, None, {}, PersonioUnauthorized, False, "personio.unauthorized"),
    (APPLICATIONS_PATH, 403, _generic(403, "feature.recruiting.disabled"), {}, PersonioFeatureDisabled, False, "feature.recruiting.disabled"),
    (APPLICATIONS_PATH, 403, _generic(403, "feature.public-api.disabled"), {}, PersonioFeatureDisabled, False, "feature.public-api.disabled"),
    (DOCUMENTS_PATH, 401, None, {}, PersonioUnauthorized, False, "personio.unauthorized"),
    (DOCUMENTS_PATH, 403, _generic(403, "feature.public-api.disabled"), {}, PersonioFeatureDisabled, False, "feature.public-api.disabled"),
    (DOCUMENTS_PATH, 413, _generic(413, "Payload too large"), {}, PersonioPayloadTooLarge, False, "errors.file-too-big"),
    (DOCUMENTS_PATH, 422, _field("file", "errors.invalid-file-type"), {}, PersonioUnprocessable, False, "errors.invalid-file-type"),
    (APPLICATIONS_PATH, 429, None, {}, PersonioRateLimited, True, "personio.rate_limited"),
    (DOCUMENTS_PATH, 429, None, {"Retry-After": "12"}, PersonioRateLimited, True, "personio.rate_limited"),
    (APPLICATIONS_PATH, 500, _generic(500, "unexpected"), {}, PersonioServerError, True, "personio.server_error"),
    (DOCUMENTS_PATH, 500, _generic(500, "unexpected"), {}, PersonioServerError, True, "personio.server_error"),
    (APPLICATIONS_PATH, 503, None, {}, PersonioServerError, True, "personio.server_error"),
]


def _send(client: PersonioClient, path: str) -> None:
    if path == DOCUMENTS_PATH:
        client.upload_document(filename="cv.pdf", content=b"%PDF")
    else:
        client.create_application(application())


@pytest.mark.parametrize(("path", "status", "body", "headers", "error_class", "retryable", "code"), DOCUMENTED_ANSWERS)
def test_every_documented_answer_is_classified(
    mocked: responses.RequestsMock,
    mock_client: PersonioClient,
    path: str,
    status: int,
    body: Any,
    headers: dict[str, str],
    error_class: type[PersonioAPIError],
    retryable: bool,
    code: str,
) -> None:
    mocked.post(MOCK_BASE + path, status=status, json=body, headers=headers)

    with pytest.raises(PersonioAPIError) as caught:
        _send(mock_client, path)

    error = caught.value
    assert type(error) is error_class
    assert error.status == status
    assert error.retryable is retryable
    assert error.reason_code == code
    assert error.path == path
    validate_request(mocked.calls[0].request)
    assert_token_hidden(error)


def test_429_retry_after_seconds(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=429, headers={"Retry-After": "42"})

    with pytest.raises(PersonioRateLimited) as caught:
        mock_client.create_application(application())

    assert caught.value.retry_after == 42.0


def test_429_retry_after_http_date(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=429, headers={"Retry-After": formatdate(time.time() + 90, usegmt=True)})

    with pytest.raises(PersonioRateLimited) as caught:
        mock_client.create_application(application())

    assert caught.value.retry_after == pytest.approx(90, abs=2)


def test_429_retry_after_garbage_is_ignored(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=429, headers={"Retry-After": "in a while"})

    with pytest.raises(PersonioRateLimited) as caught:
        mock_client.create_application(application())

    assert caught.value.retry_after is None


def test_read_timeout_mocked(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, body=requests.ReadTimeout("read timed out"))

    with pytest.raises(PersonioTimeout) as caught:
        mock_client.create_application(application())

    assert caught.value.maybe_delivered is True and caught.value.retryable
    validate_request(mocked.calls[0].request)
    assert_token_hidden(caught.value)


def test_connect_timeout_was_not_delivered(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, body=requests.ConnectTimeout("connect timed out"))

    with pytest.raises(PersonioTimeout) as caught:
        mock_client.create_application(application())

    assert caught.value.maybe_delivered is False
    assert caught.value.retryable is True
    assert caught.value.reason_code == "personio.timeout"
    assert_token_hidden(caught.value)


@pytest.mark.parametrize(
    ("message", "maybe_delivered"),
    [
        ("HTTPSConnectionPool: Max retries exceeded (Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused'))", False),
        ("HTTPSConnectionPool: Max retries exceeded (Caused by NameResolutionError('Failed to resolve api.personio.de'))", False),
        ("('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))", True),
        ("('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))", True),
    ],
)
def test_connection_errors_say_whether_the_request_may_have_arrived(mocked: responses.RequestsMock, mock_client: PersonioClient, message: str, maybe_delivered: bool) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, body=requests.ConnectionError(message))

    with pytest.raises(PersonioTransportError) as caught:
        mock_client.create_application(application())

    assert type(caught.value) is PersonioTransportError
    assert caught.value.maybe_delivered is maybe_delivered
    assert caught.value.retryable is True


def test_other_request_failures_are_transport_errors(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, body=requests.exceptions.ChunkedEncodingError("broken"))

    with pytest.raises(PersonioTransportError) as caught:
        mock_client.create_application(application())

    assert caught.value.maybe_delivered is True


def test_redirect_is_not_followed(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=302, headers={"Location": "https://elsewhere.example/"})

    with pytest.raises(PersonioAPIError) as caught:
        mock_client.create_application(application())

    assert caught.value.status == 302
    assert caught.value.retryable is False
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"size": 3}'])
def test_upload_answer_without_uuid_is_an_error(mocked: responses.RequestsMock, mock_client: PersonioClient, body: bytes) -> None:
    mocked.post(MOCK_BASE + DOCUMENTS_PATH, body=body, status=200, content_type="application/json")

    with pytest.raises(PersonioError) as caught:
        mock_client.upload_document(filename="cv.pdf", content=b"%PDF")

    assert not isinstance(caught.value, PersonioAPIError)
    assert "without a document uuid" in str(caught.value)
    assert_token_hidden(caught.value)


def test_upload_answer_with_only_a_uuid_fills_the_rest(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + DOCUMENTS_PATH, json={"uuid": 12345})

    uploaded = mock_client.upload_document(filename="cv.pdf", content=b"%PDF")

    assert uploaded == UploadedDocument(uuid="12345", size=None, mimetype=None, original_filename="cv.pdf", extension=None)


def test_probe_treats_400_as_credentials_ok(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=400, json=_field("first_name", "errors.attribute-validation.required-attribute"))

    mock_client.probe_credentials()

    assert json.loads(mocked.calls[0].request.body) == {}


def test_probe_treats_a_duplicate_answer_as_credentials_ok(mocked: responses.RequestsMock, mock_client: PersonioClient) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=400, json=_field("email", "errors.applicant-already-exists"))

    mock_client.probe_credentials()


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (401, None, PersonioUnauthorized),
        (403, _generic(403, "feature.public-api.disabled"), PersonioFeatureDisabled),
        (403, _generic(403, "feature.recruiting.disabled"), PersonioFeatureDisabled),
        (429, None, PersonioRateLimited),
        (500, None, PersonioServerError),
    ],
)
def test_probe_raises_everything_but_400(mocked: responses.RequestsMock, mock_client: PersonioClient, status: int, body: Any, error_class: type[PersonioError]) -> None:
    mocked.post(MOCK_BASE + APPLICATIONS_PATH, status=status, json=body)

    with pytest.raises(error_class) as caught:
        mock_client.probe_credentials()

    assert_token_hidden(caught.value)
