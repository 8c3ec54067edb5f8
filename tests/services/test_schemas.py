"""services.schemas: the upload request contract; every refusal names its field."""

from __future__ import annotations

import base64
import copy
from datetime import date, timedelta
from typing import Any

import pytest

from services.schemas import (
    DOCUMENT_CATEGORIES,
    PERSONIO_EXTENSIONS,
    IntakePolicy,
    UploadRequestInvalid,
    format_size,
    host_allowed,
    load_upload_request,
)

TODAY = date(2026, 3, 15)
POLICY = IntakePolicy(
    inline_document_max_bytes=1024,
    url_document_max_bytes=4096,
    document_url_hosts=("files.example.com", "*.cdn.example.net"),
    today=TODAY,
)
CV = b"%PDF-1.4 curriculum vitae"


def full_request() -> dict[str, Any]:
    """Every field of the contract, all valid."""
    return {
        "request_id": "0b6f1f0e-8a4c-4e43-9d3b-3f1c2d4e5f60",
        "account_id": "acct-42",
        "project_id": "proj-7",
        "priority": "backfill",
        "candidate": {
            "first_name": "Alex",
            "last_name": "Example",
            "email": "  Alex@Example.org ",
            "phone": "+49 30 1234",
            "location": "Berlin",
            "message": "Sourced via sourcing tool",
            "application_date": TODAY.isoformat(),
            "tags": ["sourced", "talentwunder"],
            "attributes": {
                "birthday": "1990-05-17",
                "gender": "diverse",
                "available_from": "2026-06-01",
                "salary_expectations": "70k",
                "custom_attribute_12": "yes",
            },
            "documents": [
                {"category": "cv", "filename": "cv.pdf", "content_base64": base64.b64encode(CV).decode()},
                {"category": "cover-letter", "filename": "letter.docx", "url": "https://files.example.com/letters/1.docx"},
                {"category": "certificate", "filename": "cert.png", "url": "https://eu.cdn.example.net/c.png"},
            ],
        },
    }


def errors_of(payload: Any, policy: IntakePolicy = POLICY) -> list[str]:
    with pytest.raises(UploadRequestInvalid) as caught:
        load_upload_request(payload, policy)
    return caught.value.errors


def with_candidate(**changes: Any) -> dict[str, Any]:
    request = full_request()
    for key, value in changes.items():
        if value is None:
            request["candidate"].pop(key, None)
        else:
            request["candidate"][key] = value
    return request


def with_document(document: dict[str, Any]) -> dict[str, Any]:
    return with_candidate(documents=[document])


# ------------------------------------------------------------------- valid


def test_full_valid_request_is_loaded() -> None:
    loaded = load_upload_request(full_request(), POLICY)

    candidate = loaded["candidate"]
    assert loaded["request_id"] == "0b6f1f0e-8a4c-4e43-9d3b-3f1c2d4e5f60"
    assert loaded["priority"] == "backfill"
    assert candidate["email"] == "Alex@Example.org"  # surrounding spaces stripped
    assert candidate["attributes"]["custom_attribute_12"] == "yes"
    inline, by_url, cdn = candidate["documents"]
    assert inline["content"] == CV  # decoded for storage
    assert by_url["url"] == "https://files.example.com/letters/1.docx" and "content" not in by_url
    assert cdn["category"] == "certificate"


def test_minimal_request_gets_defaults() -> None:
    request = {
        "request_id": "r1",
        "account_id": "a",
        "project_id": "p",
        "candidate": {"first_name": "A", "last_name": "B", "email": "a@example.org"},
    }

    loaded = load_upload_request(request, POLICY)

    assert loaded["priority"] == "interactive"
    assert loaded["candidate"]["documents"] == []
    assert loaded["candidate"]["tags"] == []
    assert loaded["candidate"]["attributes"] == {}
    assert loaded["candidate"]["application_date"] is None


def test_loading_does_not_change_the_payload() -> None:
    request = full_request()
    before = copy.deepcopy(request)

    load_upload_request(request, POLICY)

    assert request == before


@pytest.mark.parametrize("category", DOCUMENT_CATEGORIES)
def test_every_personio_category_is_accepted(category: str) -> None:
    load_upload_request(with_document({"category": category, "filename": "x.pdf", "content_base64": "eA=="}), POLICY)


@pytest.mark.parametrize("extension", sorted(PERSONIO_EXTENSIONS))
def test_every_personio_file_type_is_accepted(extension: str) -> None:
    load_upload_request(with_document({"category": "other", "filename": f"file.{extension.upper()}", "content_base64": "eA=="}), POLICY)


def test_application_date_today_and_past_are_fine() -> None:
    load_upload_request(with_candidate(application_date=TODAY.isoformat()), POLICY)
    load_upload_request(with_candidate(application_date="2001-01-01"), POLICY)


# ----------------------------------------------------------------- invalid


@pytest.mark.parametrize(
    ("request_", "field", "text"),
    [
        (with_candidate(email=None), "candidate.email", "is required but missing"),
        (with_candidate(email="alex(at)example.org"), "candidate.email", "is not a valid email address"),
        (with_candidate(application_date="15.03.2026"), "candidate.application_date", "YYYY-MM-DD"),
        (with_candidate(application_date="2026-02-30"), "candidate.application_date", "YYYY-MM-DD"),
        (with_candidate(application_date=(TODAY + timedelta(days=1)).isoformat()), "candidate.application_date", "lies in the future"),
        (with_candidate(attributes={"birthday": (TODAY + timedelta(days=1)).isoformat()}), "candidate.attributes.birthday", "lies in the future"),
        (with_candidate(attributes={"birthday": "17.05.1990"}), "candidate.attributes.birthday", "YYYY-MM-DD"),
        (with_candidate(attributes={"available_from": "soon"}), "candidate.attributes.available_from", "YYYY-MM-DD"),
        (with_candidate(attributes={"hobby": "chess"}), "candidate.attributes.hobby", "custom_attribute_<number>"),
        (with_candidate(attributes={"custom_attribute_x": "1"}), "candidate.attributes.custom_attribute_x", "custom_attribute_<number>"),
        (with_candidate(attributes={"phone": "+49"}), "candidate.attributes.phone", "give phone as candidate.phone"),
        (with_candidate(attributes={"gender": "m"}), "candidate.attributes.gender", "male, female, diverse, undefined"),
        (with_document({"category": "resume", "filename": "cv.pdf", "content_base64": "eA=="}), "candidate.documents.0.category", "cv, cover-letter"),
        (with_document({"category": "cv", "filename": "cv.exe", "content_base64": "eA=="}), "candidate.documents.0.filename", "'exe', which Personio refuses"),
        (with_document({"category": "cv", "filename": "cv.jpeg", "content_base64": "eA=="}), "candidate.documents.0.filename", "'jpeg', which Personio refuses"),
        (with_document({"category": "cv", "filename": "README", "content_base64": "eA=="}), "candidate.documents.0.filename", "'(none)'"),
        (with_document({"category": "cv", "filename": "../../etc/cv.pdf", "content_base64": "eA=="}), "candidate.documents.0.filename", "without a path"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": "not base64!"}), "candidate.documents.0.content_base64", "not valid base64"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": ""}), "candidate.documents.0.content_base64", "is empty"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": base64.b64encode(b"x" * 1025).decode()}), "candidate.documents.0.content_base64", "larger than the 1 KiB allowed inline; send larger files by url"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": "eA==" * 10_000}), "candidate.documents.0.content_base64", "larger than the 1 KiB allowed inline"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "http://files.example.com/cv.pdf"}), "candidate.documents.0.url", "must be an https URL"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "files.example.com/cv.pdf"}), "candidate.documents.0.url", "must be an https URL"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://user:pw@files.example.com/cv.pdf"}), "candidate.documents.0.url", "user name, password or port"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com:8443/cv.pdf"}), "candidate.documents.0.url", "user name, password or port"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://169.254.169.254/latest"}), "candidate.documents.0.url", "points to 169.254.169.254, which is not an allowed document host"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com.evil.org/cv.pdf"}), "candidate.documents.0.url", "PERSONIO_SYNC_DOCUMENT_URL_HOSTS"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://cdn.example.net/cv.pdf"}), "candidate.documents.0.url", "not an allowed document host"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com/a.pdf", "content_base64": "eA=="}), "candidate.documents.0.content_base64", "exactly one of content_base64"),
        (with_document({"category": "cv", "filename": "cv.pdf"}), "candidate.documents.0.content_base64", "exactly one of content_base64"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": "eA==", "size": 1}), "candidate.documents.0.size", "not part of the contract"),
        (with_candidate(first_name="   "), "candidate.first_name", "must not be empty"),
        (with_candidate(last_name=""), "candidate.last_name", "must not be empty"),
        (with_candidate(tags=["ok", ""]), "candidate.tags.1", "Length must be between 1 and 255"),
        (with_candidate(gender="female"), "candidate.gender", "not part of the contract; remove it"),
        (with_candidate(documents=[{"category": "cv", "filename": f"cv{i}.pdf", "content_base64": "eA=="} for i in range(11)]), "candidate.documents", "maximum length 10"),
        ({**full_request(), "callback_url": "https://x"}, "callback_url", "not part of the contract; remove it"),
        ({**full_request(), "priority": "urgent"}, "priority", "Must be one of: interactive, backfill"),
        ({**full_request(), "request_id": "has spaces in it"}, "request_id", "letters, digits and . _ : -"),
        ({k: v for k, v in full_request().items() if k != "project_id"}, "project_id", "is required but missing"),
        ({**full_request(), "candidate": "Alex"}, "candidate", "must be an object"),
    ],
)
def test_each_invalid_case_names_the_field(request_: dict[str, Any], field: str, text: str) -> None:
    errors = errors_of(request_)

    matching = [e for e in errors if e.startswith(f"{field}: ")]
    assert matching, errors
    assert any(text in e for e in matching), errors


def test_every_problem_is_reported_at_once_sorted() -> None:
    request = with_candidate(email="nope", application_date="tomorrow", attributes={"gender": "x"})
    request["extra"] = True

    errors = errors_of(request)

    assert [e.split(":", 1)[0] for e in errors] == [
        "candidate.application_date",
        "candidate.attributes.gender",
        "candidate.email",
        "extra",
    ]


def test_invalid_request_keeps_a_usable_request_id() -> None:
    with pytest.raises(UploadRequestInvalid) as caught:
        load_upload_request(with_candidate(email=None), POLICY)

    assert caught.value.request_id == full_request()["request_id"]
    assert "candidate.email" in str(caught.value)


@pytest.mark.parametrize("request_id", [None, 42, "", "x" * 129, "has space"])
def test_unusable_request_id_is_none(request_id: Any) -> None:
    request = with_candidate(email=None)
    request["request_id"] = request_id

    with pytest.raises(UploadRequestInvalid) as caught:
        load_upload_request(request, POLICY)

    assert caught.value.request_id is None


@pytest.mark.parametrize("payload", [None, [], "a string", 42])
def test_non_object_payload(payload: Any) -> None:
    assert errors_of(payload) == ["request: must be a JSON object (see the README's message contract)."]


def test_inline_limit_never_exceeds_personio_20_mb() -> None:
    generous = IntakePolicy(inline_document_max_bytes=100 * 1024 * 1024, url_document_max_bytes=1, document_url_hosts=(), today=TODAY)
    over = base64.b64encode(b"x" * (20 * 1024 * 1024 + 1)).decode()

    errors = errors_of(with_document({"category": "cv", "filename": "cv.pdf", "content_base64": over}), generous)

    assert errors == ["candidate.documents.0.content_base64: is larger than the 20 MiB allowed inline; send larger files by url."]


def test_url_documents_need_an_allowed_host_even_without_any_configured() -> None:
    closed = IntakePolicy(inline_document_max_bytes=1024, url_document_max_bytes=1, document_url_hosts=(), today=TODAY)

    errors = errors_of(with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com/cv.pdf"}), closed)

    assert errors[0].startswith("candidate.documents.0.url: points to files.example.com")


# ------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("files.example.com", True),
        ("FILES.example.com.", True),
        ("a.files.example.com", False),
        ("x.cdn.example.net", True),
        ("a.b.cdn.example.net", True),
        ("cdn.example.net", False),
        ("evilcdn.example.net", False),
        ("example.com", False),
    ],
)
def test_host_allowed(host: str, allowed: bool) -> None:
    assert host_allowed(host, ("files.example.com", "*.cdn.example.net")) is allowed


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1 KiB"), (1536, "1.5 KiB"), (512 * 1024, "512 KiB"), (10 * 1024 * 1024, "10 MiB"), (3 * 1024 * 1024 // 2, "1.5 MiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
