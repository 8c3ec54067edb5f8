"""Behaviour of the Personio stand-in over real HTTP."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from email.utils import formatdate
from typing import Any

import pytest
import requests

from sandbox import (
    CompanyConfig,
    ConfigError,
    JobConfig,
    SandboxConfig,
    SandboxServer,
    load_demo_config,
    start_sandbox,
)
from sandbox.config import parse_latency, parse_rate_limit
from tests.concurrency import run_at_once

A_ID, A_TOKEN, A_DOMAIN = 100, "token-a", "acme.jobs.personio.de"
B_ID, B_TOKEN, B_DOMAIN = 200, "token-b", "beta.jobs.personio.com"
A_JOB, A_UNPUBLISHED_JOB, B_JOB = 101, 102, 201
A_CHANNEL = 7
A_CUSTOM_PHASE = 12
APPS = "/v1/recruiting/applications"
DOCS = "/v1/recruiting/applications/documents"
MAX_DOC = 1024


def company_a(**overrides: Any) -> CompanyConfig:
    values: dict[str, Any] = {
        "company_id": A_ID,
        "access_token": A_TOKEN,
        "domain": A_DOMAIN,
        "jobs": [
            JobConfig(
                id=A_JOB,
                name="Backend Engineer (m/w/d)",
                subcompany="Acme GmbH",
                additional_offices=["Remote", "Hamburg"],
                recruiting_category="Tech",
                years_of_experience="2-5",
                keywords="python,backend",
                occupation="software_and_web_development",
                occupation_category="it_software",
                salary={"min": "60000.00", "max": "", "currencySymbol": "€",
                        "currencyCode": "EUR", "type": "yearly"},
                descriptions=[("Your tasks", "<ul><li>Build & run</li></ul>"),
                              ("Tricky", "ends with ]]> inside")],
            ),
            JobConfig(id=A_UNPUBLISHED_JOB, name="Secret Role", published=False),
        ],
        "channel_ids": [A_CHANNEL],
        "custom_attributes": ["custom_attribute_5"],
        "custom_phases": [A_CUSTOM_PHASE],
    }
    values.update(overrides)
    return CompanyConfig(**values)


def company_b(**overrides: Any) -> CompanyConfig:
    values: dict[str, Any] = {
        "company_id": B_ID,
        "access_token": B_TOKEN,
        "domain": B_DOMAIN,
        "jobs": [JobConfig(id=B_JOB, name="Data Analyst", office="Wien")],
    }
    values.update(overrides)
    return CompanyConfig(**values)


def make_config(**overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "companies": [company_a(), company_b()],
        "rate_limit": 1000,
        "rate_window": 60.0,
        "lockout": 60.0,
        "max_document_bytes": MAX_DOC,
    }
    values.update(overrides)
    return SandboxConfig(**values)


@pytest.fixture
def start() -> Iterator[Callable[..., SandboxServer]]:
    servers: list[SandboxServer] = []

    def _start(config: SandboxConfig | None = None, **overrides: Any) -> SandboxServer:
        server = start_sandbox(config or make_config(**overrides))
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(start: Callable[..., SandboxServer]) -> SandboxServer:
    return start()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    # Plain on purpose: these tests probe the stand-in itself with hand-made, often deliberately
    # invalid requests (missing headers, bad bodies); test_openapi_conformance checks its answers.
    with requests.Session() as session:
        yield session


def auth(company_id: int = A_ID, token: str = A_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Company-ID": str(company_id)}


def application(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "first_name": "Alex",
        "last_name": "Example",
        "email": "alex@example.org",
        "job_position_id": A_JOB,
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def post_app(
    http: requests.Session, server: SandboxServer, payload: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    return http.post(server.url + APPS, json=payload, headers=auth() if headers is None else headers)


def post_doc(
    http: requests.Session,
    server: SandboxServer,
    filename: str = "cv.pdf",
    content: bytes = b"%PDF-1.4 test",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return http.post(
        server.url + DOCS,
        files={"file": (filename, content, "application/octet-stream")},
        headers=auth() if headers is None else headers,
    )


def reasons(response: requests.Response) -> dict[str, list[str]]:
    """Field -> reason codes of a Personio field-error body."""
    found: dict[str, list[str]] = {}
    for item in response.json()["errors"]:
        if "field" in item:
            found.setdefault(item["field"], []).extend(e["reason"] for e in item["errors"])
    return found


# ---------------------------------------------------------------- auth & features


@pytest.mark.parametrize("path", [APPS, DOCS])
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(auth(token="wrong"), id="wrong-token"),
        pytest.param(auth(company_id=999), id="unknown-company"),
        pytest.param(auth(company_id=A_ID, token=B_TOKEN), id="other-companys-token"),
        pytest.param({"X-Company-ID": str(A_ID)}, id="no-authorization"),
        pytest.param({"Authorization": f"Bearer {A_TOKEN}"}, id="no-company-header"),
        pytest.param({"Authorization": A_TOKEN, "X-Company-ID": str(A_ID)}, id="no-bearer-scheme"),
        pytest.param({"Authorization": f"Bearer {A_TOKEN}", "X-Company-ID": "acme"}, id="bad-id"),
    ],
)
def test_bad_credentials_get_401_and_record_nothing(
    sandbox: SandboxServer, http: requests.Session, path: str, headers: dict[str, str]
) -> None:
    if path == APPS:
        response = post_app(http, sandbox, application(), headers)
    else:
        response = post_doc(http, sandbox, headers=headers)

    assert response.status_code == 401
    assert sandbox.state.applications() == [] and sandbox.state.documents() == []
    assert sandbox.state.stats()["unauthorized"] == 1


def test_chunked_request_body_is_understood(sandbox: SandboxServer, http: requests.Session) -> None:
    body = json.dumps(application()).encode()
    chunks = iter([body[:10], body[10:]])  # a generator body makes requests send it chunked

    response = http.post(
        sandbox.url + APPS, data=chunks, headers={**auth(), "Content-Type": "application/json"}
    )

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 201
    assert post_app(http, sandbox, application(email="next@example.org")).status_code == 201


def test_header_names_are_case_insensitive(sandbox: SandboxServer, http: requests.Session) -> None:
    headers = {"authorization": f"bearer {A_TOKEN}", "x-company-id": str(A_ID)}

    assert post_app(http, sandbox, application(), headers).status_code == 201


@pytest.mark.parametrize(
    ("flag", "code"),
    [("recruiting_enabled", "feature.recruiting.disabled"),
     ("public_api_enabled", "feature.public-api.disabled")],
)
@pytest.mark.parametrize("path", [APPS, DOCS])
def test_disabled_feature_gets_403_with_reason(
    start: Callable[..., SandboxServer], http: requests.Session, flag: str, code: str, path: str
) -> None:
    server = start(companies=[company_a(**{flag: False})], rate_limit=1)
    for _ in range(2):  # a 403 comes before the limiter, so it never turns into 429
        response = post_doc(http, server) if path == DOCS else post_app(http, server, application())
        assert response.status_code == 403
        assert [e["detail"] for e in response.json()["errors"]] == [code]
    assert server.state.applications() == [] and server.state.documents() == []


# ----------------------------------------------------------------------- documents


def test_document_upload_answers_personio_shape_and_records_it(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    content = b"%PDF-1.4 \x00\xff binary"

    response = post_doc(http, sandbox, "Lebenslauf Müller.PDF", content)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"uuid", "size", "mimetype", "original_filename", "extension"}
    assert uuid.UUID(body["uuid"]).version == 4
    assert body["size"] == len(content)
    assert body["mimetype"] == "application/pdf"
    assert body["original_filename"] == "Lebenslauf Müller.PDF"
    assert body["extension"] == "pdf"
    [record] = sandbox.state.documents(A_ID)
    assert record["uuid"] == body["uuid"] and record["size"] == len(content)
    assert record["sha256"] == hashlib.sha256(content).hexdigest()


def test_document_filename_keeps_only_base_name(sandbox: SandboxServer, http: requests.Session) -> None:
    response = post_doc(http, sandbox, "C:\\Users\\me\\cv.docx")

    assert response.json()["original_filename"] == "cv.docx"


def test_document_at_size_limit_is_accepted_and_above_gets_413(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    assert post_doc(http, sandbox, content=b"x" * MAX_DOC).status_code == 200

    response = post_doc(http, sandbox, content=b"x" * (MAX_DOC + 1))

    assert response.status_code == 413
    assert reasons(response) == {"file": ["errors.file-too-big"]}


def test_far_oversized_upload_is_drained_and_connection_stays_usable(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    response = post_doc(http, sandbox, content=b"x" * (MAX_DOC * 200))

    assert response.status_code == 413
    assert post_doc(http, sandbox).status_code == 200


@pytest.mark.parametrize("filename", ["malware.exe", "photo.jpeg", "scan.tiff", "README", "cv."])
def test_unsupported_file_type_gets_422(
    sandbox: SandboxServer, http: requests.Session, filename: str
) -> None:
    response = post_doc(http, sandbox, filename)

    assert response.status_code == 422
    assert reasons(response) == {"file": ["errors.invalid-file-type"]}


@pytest.mark.parametrize(
    ("extension", "mimetype"),
    [("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
     ("png", "image/png"), ("txt", "text/plain"), ("3gp", "video/3gpp"), ("ppt", "application/vnd.ms-powerpoint")],
)
def test_supported_types_get_their_mimetype(
    sandbox: SandboxServer, http: requests.Session, extension: str, mimetype: str
) -> None:
    response = post_doc(http, sandbox, f"file.{extension}")

    assert response.status_code == 200
    assert (response.json()["extension"], response.json()["mimetype"]) == (extension, mimetype)


def test_upload_without_file_field_gets_422(sandbox: SandboxServer, http: requests.Session) -> None:
    response = http.post(
        sandbox.url + DOCS, files={"document": ("cv.pdf", b"x")}, headers=auth()
    )

    assert response.status_code == 422
    assert reasons(response) == {"file": ["errors.attribute-validation.required-attribute"]}
    assert any("file" in e.get("detail", "") for e in response.json()["errors"])


def test_upload_that_is_not_multipart_gets_422(sandbox: SandboxServer, http: requests.Session) -> None:
    response = http.post(sandbox.url + DOCS, json={"file": "cv.pdf"}, headers=auth())

    assert response.status_code == 422
    assert sandbox.state.documents() == []


# -------------------------------------------------------------------- applications


def test_valid_application_gets_201_empty_and_is_recorded(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    doc = post_doc(http, sandbox).json()
    payload = application(
        recruiting_channel_id=A_CHANNEL,
        external_posting_id="ext-1",
        message="Sourced",
        application_date=date.today().isoformat(),
        phase={"type": "system", "id": "unassigned"},
        tags=["sourced", "brand-new-tag"],
        files=[{"uuid": doc["uuid"], "original_filename": "cv.pdf", "category": "cv"}],
        attributes=[
            {"id": "phone", "value": "+49 30 1234"},
            {"id": "gender", "value": "diverse"},
            {"id": "birthday", "value": "1990-04-30"},
            {"id": "available_from", "value": "2030-01-01"},
            {"id": "custom_attribute_5", "value": "anything"},
        ],
    )

    response = post_app(http, sandbox, payload)

    assert response.status_code == 201
    assert response.content == b""
    [record] = sandbox.state.applications(A_ID)
    assert record["job_position_id"] == A_JOB
    assert record["email"] == "alex@example.org"
    assert record["recruiting_channel_id"] == A_CHANNEL
    assert record["external_posting_id"] == "ext-1"
    assert record["phase"] == record["filed_phase"] == {"type": "system", "id": "unassigned"}
    assert record["file_uuids"] == [doc["uuid"]]
    assert record["payload"] == payload


def test_custom_phase_with_unknown_id_is_accepted_and_filed_as_unassigned(sandbox: SandboxServer, http: requests.Session) -> None:
    response = post_app(http, sandbox, application(phase={"type": "custom", "id": 123456}))

    assert response.status_code == 201
    [record] = sandbox.state.applications(A_ID)
    assert record["phase"] == {"type": "custom", "id": 123456}
    assert record["filed_phase"] == {"type": "system", "id": "unassigned"}


@pytest.mark.parametrize(
    ("phase", "filed"),
    [
        ({"type": "custom", "id": A_CUSTOM_PHASE}, {"type": "custom", "id": A_CUSTOM_PHASE}),
        ({"type": "system", "id": "offer"}, {"type": "system", "id": "offer"}),
        (None, None),
    ],
    ids=["known-custom", "system", "none"],
)
def test_the_phase_an_application_is_filed_under_is_recorded(
    sandbox: SandboxServer, http: requests.Session, phase: Any, filed: Any
) -> None:
    response = post_app(http, sandbox, application(phase=phase))

    assert response.status_code == 201
    [record] = sandbox.state.applications(A_ID)
    assert record["phase"] == phase
    assert record["filed_phase"] == filed


@pytest.mark.parametrize("value", ["As soon as possible", "ab sofort", "2030-01-01", "Q3 2027"])
def test_available_from_is_free_text_or_a_date(sandbox: SandboxServer, http: requests.Session, value: str) -> None:
    response = post_app(http, sandbox, application(attributes=[{"id": "available_from", "value": value}]))

    assert response.status_code == 201


@pytest.mark.parametrize("body", [{}, None], ids=["empty-object", "no-body"])
def test_empty_body_gets_400_with_required_field_errors(
    sandbox: SandboxServer, http: requests.Session, body: Any
) -> None:
    if body is None:
        response = http.post(sandbox.url + APPS, headers=auth())
    else:
        response = post_app(http, sandbox, body)

    assert response.status_code == 400
    required = ["errors.attribute-validation.required-attribute"]
    assert reasons(response) == {
        "first_name": required, "last_name": required, "email": required, "job_position_id": required,
    }


TOMORROW = (date.today() + timedelta(days=1)).isoformat()
NOT_UPLOADED = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"first_name": "   "}, "first_name", "errors.attribute-validation.required-attribute"),
        ({"last_name": ""}, "last_name", "errors.attribute-validation.required-attribute"),
        ({"first_name": 42}, "first_name", "errors.attribute-validation.invalid-type"),
        ({"email": "not-an-email"}, "email", "errors.attribute-validation.invalid-email-format"),
        ({"email": "a b@example.org"}, "email", "errors.attribute-validation.invalid-email-format"),
        ({"email": None}, "email", "errors.attribute-validation.required-attribute"),
        ({"job_position_id": A_UNPUBLISHED_JOB}, "job_position_id", "errors.job-position.not-published"),
        ({"job_position_id": 999999}, "job_position_id", "errors.job-position.not-published"),
        ({"job_position_id": B_JOB}, "job_position_id", "errors.job-position.not-published"),
        ({"job_position_id": "101"}, "job_position_id", "errors.attribute-validation.invalid-type"),
        ({"recruiting_channel_id": 8}, "recruiting_channel_id",
         "errors.posting-validation.channel-not-found"),
        ({"application_date": TOMORROW}, "application_date", "errors.date-validation.date-in-the-future"),
        ({"application_date": "2024-13-01"}, "application_date",
         "errors.attribute-validation.invalid-date-format"),
        ({"application_date": "01.02.2024"}, "application_date",
         "errors.attribute-validation.invalid-date-format"),
        ({"phase": {"type": "system", "id": "hired"}}, "phase",
         "errors.phase-validation.invalid-system-phase"),
        ({"files": [{"uuid": NOT_UPLOADED, "original_filename": "cv.pdf", "category": "cv"}]},
         "files", "errors.file-validation.file-not-exists"),
        ({"files": [{"uuid": NOT_UPLOADED, "original_filename": "cv.pdf", "category": "resume"}]},
         "files", "errors.file-validation.unknown-file-category"),
        ({"files": [{"uuid": NOT_UPLOADED, "original_filename": "cv.pdf"}]},
         "files", "errors.attribute-validation.required-attribute"),
        ({"attributes": [{"id": "shoe_size", "value": "44"}]}, "shoe_size",
         "errors.attribute-validation.unknown"),
        ({"attributes": [{"id": "custom_attribute_6", "value": "x"}]}, "custom_attribute_6",
         "errors.attribute-validation.unknown"),
        ({"attributes": [{"id": "gender", "value": "robot"}]}, "gender",
         "errors.attribute-validation.unknown-attribute-option"),
        ({"attributes": [{"id": "birthday", "value": "30.04.1990"}]}, "birthday",
         "errors.attribute-validation.invalid-date-format"),
        ({"phase": {"type": "custom", "id": str(A_CUSTOM_PHASE)}}, "phase",
         "errors.attribute-validation.invalid-type"),
        ({"phase": {"type": "stage", "id": "offer"}}, "phase",
         "errors.phase-validation.invalid-system-phase"),
        ({"phase": {"type": "system"}}, "phase", "errors.attribute-validation.required-attribute"),
        ({"phase": "offer"}, "phase", "errors.attribute-validation.invalid-type"),
        ({"external_posting_id": 17}, "external_posting_id", "errors.attribute-validation.invalid-type"),
    ],
)
def test_validation_rule_answers_400_with_reason(
    sandbox: SandboxServer, http: requests.Session, overrides: dict[str, Any], field: str, reason: str
) -> None:
    payload = application(**overrides)  # a None override removes the field

    response = post_app(http, sandbox, payload)

    assert response.status_code == 400
    assert reason in reasons(response)[field]
    assert sandbox.state.applications() == []


def test_all_field_errors_come_in_one_response_with_unique_fields(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    payload = application(
        first_name="", email="nope", recruiting_channel_id=8,
        files=[{"uuid": NOT_UPLOADED, "original_filename": "a.pdf", "category": "cv"},
               {"uuid": NOT_UPLOADED, "original_filename": "b.pdf", "category": "bad"}],
    )

    response = post_app(http, sandbox, payload)

    fields = [item["field"] for item in response.json()["errors"]]
    assert len(fields) == len(set(fields))
    assert set(fields) == {"first_name", "email", "recruiting_channel_id", "files"}
    assert all(item["type"].endswith("FieldError") for item in response.json()["errors"])
    assert reasons(response)["files"].count("errors.file-validation.file-not-exists") == 2


def test_document_of_another_company_cannot_be_attached(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    doc_b = post_doc(http, sandbox, headers=auth(B_ID, B_TOKEN)).json()
    files = [{"uuid": doc_b["uuid"], "original_filename": "cv.pdf", "category": "cv"}]

    response = post_app(http, sandbox, application(files=files))

    assert reasons(response) == {"files": ["errors.file-validation.file-not-exists"]}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_gets_400_error_body(
    sandbox: SandboxServer, http: requests.Session, raw: bytes
) -> None:
    headers = {**auth(), "Content-Type": "application/json"}

    response = http.post(sandbox.url + APPS, data=raw, headers=headers)

    assert response.status_code == 400
    assert response.json()["errors"][0]["status"] == "400"


def test_duplicate_email_per_job_gets_applicant_already_exists(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    assert post_app(http, sandbox, application(email="Alex@Example.org")).status_code == 201

    response = post_app(http, sandbox, application(email="  alex@EXAMPLE.org "))

    assert response.status_code == 400
    assert reasons(response) == {"email": ["errors.applicant-already-exists"]}
    assert len(sandbox.state.applications()) == 1


def test_same_email_for_other_job_or_company_is_not_a_duplicate(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    second_job = JobConfig(id=103, name="Frontend Engineer")
    server = start(companies=[company_a(jobs=[*company_a().jobs, second_job]), company_b()])

    assert post_app(http, server, application()).status_code == 201
    assert post_app(http, server, application(job_position_id=103)).status_code == 201
    other = application(job_position_id=B_JOB)
    assert post_app(http, server, other, auth(B_ID, B_TOKEN)).status_code == 201


def test_concurrent_identical_applications_create_exactly_one(sandbox: SandboxServer) -> None:
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def apply() -> None:
        barrier.wait()
        response = requests.post(sandbox.url + APPS, json=application(), headers=auth(), timeout=10)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=apply) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201] + [400] * 19
    assert len(sandbox.state.applications()) == 1


# ----------------------------------------------------------------------- rate limit

# Tests that never wait for the window can afford a long one, which keeps
# them deterministic on a slow machine; the lock-out test scales time down.
FAST_LIMIT = {"rate_limit": 5, "rate_window": 2.0, "lockout": 2.0}


def probe(http: requests.Session, server: SandboxServer, company: int = A_ID) -> int:
    """An empty-body POST: 400 means the limiter let it through."""
    token = A_TOKEN if company == A_ID else B_TOKEN
    return post_app(http, server, {}, auth(company, token)).status_code


def test_request_over_the_limit_gets_429_without_body_or_retry_after(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(**FAST_LIMIT)

    assert [probe(http, server) for _ in range(5)] == [400] * 5
    response = post_app(http, server, {})

    assert response.status_code == 429
    assert response.content == b""
    assert "Retry-After" not in response.headers
    stats = server.state.stats()["companies"][str(A_ID)]
    assert (stats["accepted"], stats["rate_limited"]) == (5, 1)


def test_lockout_outlasts_the_window_and_is_not_extended_by_429s(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(rate_limit=3, rate_window=0.2, lockout=0.6)
    assert [probe(http, server) for _ in range(4)] == [400, 400, 400, 429]
    locked_at = time.monotonic()

    time.sleep(0.3)  # the window has emptied, the lock-out still holds
    assert probe(http, server) == 429
    while time.monotonic() - locked_at < 0.55:
        assert probe(http, server) == 429  # hammering does not extend it
        time.sleep(0.05)
    time.sleep(max(0.0, 0.65 - (time.monotonic() - locked_at)))

    assert probe(http, server) == 400


def test_lockout_of_one_company_leaves_others_alone(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(**FAST_LIMIT)
    for _ in range(6):
        probe(http, server, A_ID)
    assert probe(http, server, A_ID) == 429

    assert [probe(http, server, B_ID) for _ in range(5)] == [400] * 5


def test_shared_budget_counts_documents_and_applications_together(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(**FAST_LIMIT)
    assert [post_doc(http, server).status_code for _ in range(3)] == [200] * 3
    assert [probe(http, server) for _ in range(2)] == [400] * 2

    assert post_doc(http, server).status_code == 429
    assert probe(http, server) == 429


def test_per_endpoint_budgets_are_independent(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(shared_budget=False, **FAST_LIMIT)
    assert [post_doc(http, server).status_code for _ in range(5)] == [200] * 5
    assert post_doc(http, server).status_code == 429

    assert [probe(http, server) for _ in range(5)] == [400] * 5
    assert probe(http, server) == 429
    endpoints = server.state.stats()["companies"][str(A_ID)]["endpoints"]
    assert endpoints["documents"]["accepted"] == endpoints["applications"]["accepted"] == 5


def test_retry_after_is_sent_only_when_configured(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(send_retry_after=True, rate_limit=1, rate_window=60.0, lockout=30.0)
    probe(http, server)

    response = post_app(http, server, {})

    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 30


def test_unauthorized_requests_do_not_use_the_budget(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(**FAST_LIMIT)
    for _ in range(10):
        assert post_app(http, server, {}, auth(token="wrong")).status_code == 401

    assert [probe(http, server) for _ in range(5)] == [400] * 5


def test_limiter_admits_exactly_the_budget_under_concurrent_load(
    start: Callable[..., SandboxServer],
) -> None:
    server = start(rate_limit=50, rate_window=60.0, lockout=60.0)
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        with requests.Session() as session:
            for _ in range(6):
                status = probe(session, server)
                with lock:
                    statuses.append(status)

    assert run_at_once(hammer, 16) == []

    assert statuses.count(400) == 50
    assert statuses.count(429) == 16 * 6 - 50
    stats = server.state.stats()["companies"][str(A_ID)]
    assert (stats["accepted"], stats["rate_limited"]) == (50, 46)


def test_stats_timestamps_are_opt_in_wall_clock(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start()
    before = time.time()
    probe(http, server)
    post_doc(http, server)

    plain = http.get(server.url + "/_sandbox/stats").json()["companies"][str(A_ID)]
    detailed = http.get(server.url + "/_sandbox/stats?timestamps=1").json()["companies"][str(A_ID)]

    assert "timestamps" not in plain
    assert len(detailed["timestamps"]) == 2
    assert all(before <= ts <= time.time() for ts in detailed["timestamps"])
    assert len(detailed["endpoints"]["documents"]["timestamps"]) == 1
    assert detailed["endpoints"]["applications"]["statuses"] == {"400": 1}


def test_latency_is_added_to_api_answers_only(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(latency=(0.15, 0.15))

    began = time.monotonic()
    probe(http, server)
    api_time = time.monotonic() - began
    began = time.monotonic()
    http.get(server.url + "/_sandbox/health")
    admin_time = time.monotonic() - began

    assert api_time >= 0.15
    assert admin_time < 0.1


# -------------------------------------------------------------------------- feed


def get_feed(http: requests.Session, server: SandboxServer, domain: str = A_DOMAIN,
             **kwargs: Any) -> requests.Response:
    return http.get(server.feed_url(domain, "de"), allow_redirects=False, **kwargs)


def is_feed(content: bytes) -> bool:
    try:
        return ET.fromstring(content).tag == "workzag-jobs"
    except ET.ParseError:
        return False


def test_feed_renders_published_jobs_in_personio_format(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    response = get_feed(http, sandbox)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=UTF-8"
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(response.content)
    assert root.tag == "workzag-jobs"
    [position] = root.findall("position")  # the unpublished job is absent
    assert [child.tag for child in position] == [
        "id", "subcompany", "office", "additionalOffices", "department", "recruitingCategory",
        "name", "jobDescriptions", "employmentType", "seniority", "schedule", "yearsOfExperience",
        "keywords", "occupation", "occupationCategory", "createdAt", "salaryInformation",
    ]
    assert position.findtext("id") == str(A_JOB)
    assert [o.text for o in position.findall("additionalOffices/office")] == ["Remote", "Hamburg"]
    descriptions = position.findall("jobDescriptions/jobDescription")
    assert [d.findtext("name") for d in descriptions] == ["Your tasks", "Tricky"]
    assert descriptions[0].findtext("value") == "<ul><li>Build & run</li></ul>"
    assert descriptions[1].findtext("value") == "ends with ]]> inside"
    assert b"<![CDATA[<ul><li>Build & run</li></ul>]]>" in response.content
    salary = position.find("salaryInformation")
    assert salary is not None
    assert [c.tag for c in salary] == ["min", "max", "currencySymbol", "currencyCode", "type"]
    assert salary.findtext("currencySymbol") == "€"


def test_feed_of_company_without_published_jobs_is_an_empty_root(
    start: Callable[..., SandboxServer], http: requests.Session
) -> None:
    server = start(companies=[company_a(jobs=[JobConfig(id=1, name="x", published=False)])])

    response = get_feed(http, server)

    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert root.tag == "workzag-jobs" and len(root) == 0


@pytest.mark.parametrize("language", ["de", "en", "fr", "es", "nl", "it", "pt", None])
def test_feed_accepts_every_language(
    sandbox: SandboxServer, http: requests.Session, language: str | None
) -> None:
    response = http.get(sandbox.feed_url(A_DOMAIN, language))

    assert response.status_code == 200
    assert response.headers["Content-Language"] == (language or "de")
    assert ET.fromstring(response.content).tag == "workzag-jobs"


def test_feed_conditional_get_with_etag(sandbox: SandboxServer, http: requests.Session) -> None:
    first = get_feed(http, sandbox)

    again = get_feed(http, sandbox, headers={"If-None-Match": first.headers["ETag"]})
    other = get_feed(http, sandbox, headers={"If-None-Match": '"something-else"'})

    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    assert other.status_code == 200


def test_feed_conditional_get_with_if_modified_since(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    first = get_feed(http, sandbox)

    same = get_feed(http, sandbox, headers={"If-Modified-Since": first.headers["Last-Modified"]})
    older = get_feed(
        http, sandbox, headers={"If-Modified-Since": formatdate(time.time() - 3600, usegmt=True)}
    )

    assert same.status_code == 304
    assert older.status_code == 200


def test_feed_change_yields_new_etag_and_later_last_modified(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    first = get_feed(http, sandbox)
    jobs = [job.to_dict() for job in company_a().jobs]
    jobs.append({"id": 104, "name": "New Role"})
    http.patch(sandbox.url + f"/_sandbox/companies/{A_ID}", json={"jobs": jobs}).raise_for_status()

    second = get_feed(
        http, sandbox,
        headers={"If-None-Match": first.headers["ETag"]},
    )
    by_date = get_feed(http, sandbox, headers={"If-Modified-Since": first.headers["Last-Modified"]})

    assert second.status_code == 200 and by_date.status_code == 200
    assert second.headers["ETag"] != first.headers["ETag"]
    ids = [p.findtext("id") for p in ET.fromstring(second.content).findall("position")]
    assert ids == [str(A_JOB), "104"]


def test_feed_head_request_has_headers_but_no_body(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    response = http.head(sandbox.feed_url(A_DOMAIN))

    assert response.status_code == 200
    assert response.headers["ETag"] and response.headers["Last-Modified"]
    assert int(response.headers["Content-Length"]) > 0
    assert response.content == b""


@pytest.mark.parametrize(
    ("mode", "status", "content_type"),
    [("html", 200, "text/html"), ("redirect", 301, "text/html"), ("not_found", 404, "text/html"),
     ("truncated", 200, "text/xml"), ("server_error", 503, "text/html")],
)
def test_feed_modes_imitate_broken_feeds(
    start: Callable[..., SandboxServer], http: requests.Session, mode: str, status: int,
    content_type: str,
) -> None:
    server = start(companies=[company_a(feed_mode=mode)])

    response = get_feed(http, server)

    assert response.status_code == status
    assert response.headers["Content-Type"].startswith(content_type)
    assert not is_feed(response.content)
    if mode == "redirect":
        assert response.headers["Location"] == "https://www.personio.de/"


def test_feed_is_routed_by_host_header(sandbox: SandboxServer, http: requests.Session) -> None:
    by_host = http.get(sandbox.url + "/xml?language=de", headers={"Host": f"{B_DOMAIN}:443"})
    unknown = http.get(sandbox.url + "/xml", headers={"Host": "nobody.jobs.personio.de"})

    assert by_host.status_code == 200
    assert [p.findtext("id") for p in ET.fromstring(by_host.content)] == [str(B_JOB)]
    assert unknown.status_code == 404


def test_unknown_feed_domain_gets_404_html(sandbox: SandboxServer, http: requests.Session) -> None:
    response = get_feed(http, sandbox, "nobody.jobs.personio.de")

    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


def test_feed_is_not_rate_limited(start: Callable[..., SandboxServer], http: requests.Session) -> None:
    server = start(**FAST_LIMIT)

    assert {get_feed(http, server).status_code for _ in range(12)} == {200}


# ------------------------------------------------------------------------- admin


def test_admin_lists_filter_by_company(sandbox: SandboxServer, http: requests.Session) -> None:
    post_doc(http, sandbox)
    post_doc(http, sandbox, headers=auth(B_ID, B_TOKEN))
    post_app(http, sandbox, application())
    post_app(http, sandbox, application(job_position_id=B_JOB), auth(B_ID, B_TOKEN))

    apps = http.get(sandbox.url + "/_sandbox/applications").json()
    apps_a = http.get(sandbox.url + f"/_sandbox/applications?company_id={A_ID}").json()
    docs_b = http.get(sandbox.url + f"/_sandbox/documents?company_id={B_ID}").json()

    assert len(apps) == 2
    assert [a["job_position_id"] for a in apps_a] == [A_JOB]
    assert [d["company_id"] for d in docs_b] == [B_ID]
    assert http.get(sandbox.url + "/_sandbox/documents?company_id=x").status_code == 400


def test_reset_clears_ledger_and_limiter(start: Callable[..., SandboxServer], http: requests.Session) -> None:
    server = start(rate_limit=2, rate_window=60.0, lockout=60.0)
    post_app(http, server, application())
    post_app(http, server, {})
    assert probe(http, server) == 429

    assert http.post(server.url + "/_sandbox/reset").status_code == 200

    assert server.state.applications() == []
    assert server.state.stats()["companies"] == {}
    assert post_app(http, server, application()).status_code == 201


def test_reset_can_restore_the_start_config(sandbox: SandboxServer, http: requests.Session) -> None:
    http.patch(sandbox.url + f"/_sandbox/companies/{A_ID}", json={"access_token": "rotated"})
    http.patch(sandbox.url + "/_sandbox/settings", json={"rate_limit": 1})

    http.post(sandbox.url + "/_sandbox/reset", json={"restore_config": True})

    assert post_app(http, sandbox, application()).status_code == 201
    assert http.get(sandbox.url + "/_sandbox/settings").json()["rate_limit"] == 1000


def test_put_company_rotates_token(sandbox: SandboxServer, http: requests.Session) -> None:
    body = company_a(access_token="new-token").to_dict()

    response = http.put(sandbox.url + f"/_sandbox/companies/{A_ID}", json=body)

    assert response.status_code == 200
    assert post_app(http, sandbox, application()).status_code == 401
    assert post_app(http, sandbox, application(), auth(token="new-token")).status_code == 201


def test_put_creates_a_new_company(sandbox: SandboxServer, http: requests.Session) -> None:
    body = {"access_token": "t3", "domain": "gamma.jobs.personio.de", "jobs": [{"id": 301, "name": "Ops"}]}

    response = http.put(sandbox.url + "/_sandbox/companies/300", json=body)

    assert response.status_code == 201
    listed = http.get(sandbox.url + "/_sandbox/companies").json()
    assert sorted(c["company_id"] for c in listed) == [A_ID, B_ID, 300]
    assert post_app(http, sandbox, application(job_position_id=301), auth(300, "t3")).status_code == 201
    assert get_feed(http, sandbox, "gamma.jobs.personio.de").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"company_id": 999, "access_token": "t", "domain": "x.jobs.personio.de"},
        {"access_token": "t", "domain": "x.jobs.personio.de", "feed_mode": "bogus"},
        {"access_token": "t", "domain": "x.jobs.personio.de", "colour": "red"},
        {"access_token": "t", "domain": B_DOMAIN},
        {"domain": "x.jobs.personio.de"},
    ],
    ids=["id-mismatch", "bad-feed-mode", "unknown-key", "domain-taken", "missing-token"],
)
def test_put_company_rejects_invalid_bodies(
    sandbox: SandboxServer, http: requests.Session, body: dict[str, Any]
) -> None:
    response = http.put(sandbox.url + f"/_sandbox/companies/{A_ID}", json=body)

    assert response.status_code == 400
    assert "error" in response.json()
    assert post_app(http, sandbox, application()).status_code == 201  # unchanged


def test_patch_company_flips_flags_and_unpublishes_jobs(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    unpublished = [dict(company_a().jobs[0].to_dict(), published=False)]
    http.patch(sandbox.url + f"/_sandbox/companies/{A_ID}", json={"jobs": unpublished})

    assert reasons(post_app(http, sandbox, application())) == {
        "job_position_id": ["errors.job-position.not-published"]
    }
    assert ET.fromstring(get_feed(http, sandbox).content).findall("position") == []

    http.patch(sandbox.url + f"/_sandbox/companies/{A_ID}", json={"recruiting_enabled": False})
    assert post_app(http, sandbox, application()).status_code == 403
    assert http.patch(sandbox.url + "/_sandbox/companies/12345", json={}).status_code == 404


def test_delete_company_makes_its_credentials_unknown(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    assert http.delete(sandbox.url + f"/_sandbox/companies/{B_ID}").status_code == 200

    assert post_app(http, sandbox, application(), auth(B_ID, B_TOKEN)).status_code == 401
    assert http.get(sandbox.url + f"/_sandbox/companies/{B_ID}").status_code == 404


def test_settings_can_be_changed_at_run_time(sandbox: SandboxServer, http: requests.Session) -> None:
    response = http.patch(
        sandbox.url + "/_sandbox/settings", json={"rate_limit": 1, "send_retry_after": True}
    )

    assert response.json()["rate_limit"] == 1
    assert probe(http, sandbox) == 400
    assert "Retry-After" in post_app(http, sandbox, {}).headers
    assert http.patch(sandbox.url + "/_sandbox/settings", json={"bogus": 1}).status_code == 400
    assert http.patch(sandbox.url + "/_sandbox/settings", json={"rate_limit": 0}).status_code == 400


def test_unknown_path_gets_404_json_and_wrong_method_405(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    missing = http.post(sandbox.url + "/v1/recruiting/nope", json={}, headers=auth())
    wrong = http.get(sandbox.url + APPS, headers=auth())

    assert missing.status_code == 404 and "error" in missing.json()
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    # The connection survives both (bodies were drained).
    assert post_app(http, sandbox, application()).status_code == 201


# ------------------------------------------------------------------------ faults


def test_status_fault_hits_next_matching_requests_only(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    fault = {"company_id": A_ID, "status": 503, "count": 2, "endpoint": "applications"}
    assert http.post(sandbox.url + "/_sandbox/faults", json=fault).status_code == 201

    other_company = post_app(http, sandbox, application(job_position_id=B_JOB), auth(B_ID, B_TOKEN))
    document = post_doc(http, sandbox)
    first, second = (post_app(http, sandbox, application()) for _ in range(2))
    third = post_app(http, sandbox, application())

    assert (other_company.status_code, document.status_code) == (201, 200)
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 201)
    assert first.json()["errors"][0]["status"] == "503"
    assert [a["company_id"] for a in sandbox.state.applications()] == [B_ID, A_ID]
    assert http.get(sandbox.url + "/_sandbox/faults").json() == []


def test_in_process_fault_on_documents(sandbox: SandboxServer, http: requests.Session) -> None:
    sandbox.state.inject_fault(status=500, endpoint="documents")

    assert post_doc(http, sandbox).status_code == 500
    assert post_doc(http, sandbox).status_code == 200
    assert len(sandbox.state.documents()) == 1


def test_drop_after_commit_records_application_but_client_sees_connection_error(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    sandbox.state.inject_fault(kind="drop_after_commit", endpoint="applications")

    with pytest.raises(requests.ConnectionError):
        post_app(http, sandbox, application())

    assert len(sandbox.state.applications()) == 1
    retry = post_app(http, sandbox, application())
    assert reasons(retry) == {"email": ["errors.applicant-already-exists"]}
    assert sandbox.state.stats()["companies"][str(A_ID)]["statuses"]["dropped"] == 1


def test_drop_before_commit_records_nothing(sandbox: SandboxServer, http: requests.Session) -> None:
    http.post(sandbox.url + "/_sandbox/faults", json={"kind": "drop", "count": 1}).raise_for_status()

    with pytest.raises(requests.ConnectionError):
        post_app(http, sandbox, application())

    assert sandbox.state.applications() == []
    assert post_app(http, sandbox, application()).status_code == 201


def test_delay_after_commit_causes_read_timeout_after_commit(
    sandbox: SandboxServer, http: requests.Session
) -> None:
    sandbox.state.inject_fault(kind="delay_after_commit", delay=0.5)

    with pytest.raises(requests.ReadTimeout):
        http.post(sandbox.url + APPS, json=application(), headers=auth(), timeout=(2, 0.2))

    assert len(sandbox.state.applications()) == 1


@pytest.mark.parametrize(
    "fault",
    [{"kind": "explode"}, {"status": 200}, {"count": 0}, {"endpoint": "feeds"}, {"colour": 1}],
)
def test_invalid_fault_is_rejected(
    sandbox: SandboxServer, http: requests.Session, fault: dict[str, Any]
) -> None:
    assert http.post(sandbox.url + "/_sandbox/faults", json=fault).status_code == 400
    assert sandbox.state.faults() == []


def test_faults_can_be_cleared(sandbox: SandboxServer, http: requests.Session) -> None:
    sandbox.state.inject_fault(status=500, count=5)

    http.delete(sandbox.url + "/_sandbox/faults")

    assert post_app(http, sandbox, application()).status_code == 201


# ------------------------------------------------------------ server & config


def test_keep_alive_reuses_one_connection(sandbox: SandboxServer, http: requests.Session) -> None:
    for _ in range(5):
        assert probe(http, sandbox) == 400
        get_feed(http, sandbox)

    assert sandbox.open_connections == 1


def test_malformed_content_length_gets_400_and_closes(sandbox: SandboxServer) -> None:
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as connection:
        connection.sendall(
            b"POST /v1/recruiting/applications HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in answer


def test_stop_is_idempotent_and_frees_the_port(start: Callable[..., SandboxServer]) -> None:
    server = start()
    requests.get(server.url + "/_sandbox/health", timeout=2).raise_for_status()

    server.stop()
    server.stop()

    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/_sandbox/health", timeout=2)


def test_start_sandbox_defaults_to_demo_fixture() -> None:
    with start_sandbox() as server:
        response = requests.post(
            server.url + APPS,
            json=application(job_position_id=1000002, recruiting_channel_id=4242,
                             attributes=[{"id": "custom_attribute_1", "value": "x"}]),
            headers=auth(1000, "demo-token-please-change"),
            timeout=5,
        )
        feed = requests.get(server.feed_url("second.jobs.personio.com"), timeout=5)

    assert response.status_code == 201
    assert [p.findtext("id") for p in ET.fromstring(feed.content)] == ["2000001"]


def test_demo_fixture_matches_the_documented_accounts() -> None:
    config = load_demo_config()

    demo, second = config.companies
    assert (demo.company_id, demo.access_token, demo.domain) == (
        1000, "demo-token-please-change", "demo.jobs.personio.de")
    assert demo.channel_ids == [4242] and demo.custom_attributes == ["custom_attribute_1"]
    assert [(j.id, j.name, j.office) for j in demo.jobs] == [
        (1000001, "Backend Engineer (m/w/d)", "Berlin"),
        (1000002, "Recruiter (m/w/d)", "München"),
        (1000003, "Working Student Marketing", "Hamburg"),
    ]
    assert demo.jobs[1].additional_offices == ["Remote"]
    assert (second.company_id, second.access_token, second.domain) == (
        2000, "second-company-token", "second.jobs.personio.com")
    assert [j.id for j in second.jobs] == [2000001]


def test_config_round_trips_through_json() -> None:
    config = make_config(latency=(0.01, 0.02))

    again = SandboxConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert again == config


@pytest.mark.parametrize(
    "data",
    [{"rate_limit": 0}, {"latency": [0.2, 0.1]}, {"companies": [{"company_id": 1}]},
     {"companies": [{"company_id": 1, "access_token": "t", "domain": "d", "jobs": [{"id": "x", "name": "n"}]}]},
     {"companies": [{"company_id": 1, "access_token": "t", "domain": "d", "custom_phases": ["interview"]}]},
     {"nonsense": True}],
)
def test_invalid_config_is_rejected(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SandboxConfig.from_dict(data)


def test_cli_parsers() -> None:
    assert parse_rate_limit("20/60s") == (20, 60.0)
    assert parse_rate_limit("5/500ms") == (5, 0.5)
    assert parse_rate_limit("100/1m") == (100, 60.0)
    assert parse_latency("0.05-0.2") == (0.05, 0.2)
    assert parse_latency(0.1) == (0.1, 0.1)
    with pytest.raises(ConfigError):
        parse_rate_limit("fast")


def test_python_m_sandbox_serves_until_terminated(tmp_path: Any) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(make_config().to_dict()))
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0", "--config", str(config_file),
         "--rate-limit", "3/60s", "--lockout", "5", "--latency", "0-0.01"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("Personio sandbox listening on http://127.0.0.1:")
        url = first_line.rsplit(" ", 1)[-1].strip()
        banner = [process.stdout.readline() for _ in range(8)]
        assert any("/feeds/{domain}/xml" in line for line in banner)
        assert any(A_TOKEN in line for line in banner)

        settings = requests.get(url + "/_sandbox/settings", timeout=5).json()
        assert (settings["rate_limit"], settings["rate_window"], settings["lockout"]) == (3, 60.0, 5.0)
        assert requests.post(url + APPS, json=application(), headers=auth(), timeout=5).status_code == 201
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
        if process.stdout is not None:
            process.stdout.close()
