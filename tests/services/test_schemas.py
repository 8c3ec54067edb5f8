"""services.schemas: the upload request contract; every refusal names its field."""

from __future__ import annotations

import base64
import copy
from datetime import date, timedelta
from typing import Any

import pytest

from services.schemas import (
    DOCUMENT_CATEGORIES,
    MAX_ERRORS,
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
        (with_candidate(attributes={"available_from": "2026-02-30"}), "candidate.attributes.available_from", "no such day exists"),
        (with_candidate(attributes={"hobby": "chess"}), "candidate.attributes.hobby", "custom_attribute_<number>"),
        (with_candidate(attributes={"custom_attribute_x": "1"}), "candidate.attributes.custom_attribute_x", "custom_attribute_<number>"),
        (with_candidate(attributes={"phone": "+49"}), "candidate.attributes.phone", "give phone as candidate.phone"),
        (with_candidate(attributes={"gender": "m"}), "candidate.attributes.gender", "male, female, diverse, undefined"),
        (with_document({"category": "resume", "filename": "cv.pdf", "content_base64": "eA=="}), "candidate.documents.0.category", "cv, cover-letter"),
        (with_document({"category": "cv", "filename": "cv.exe", "content_base64": "eA=="}), "candidate.documents.0.filename", "must end in a file type Personio accepts"),
        (with_document({"category": "cv", "filename": "cv.jpeg", "content_base64": "eA=="}), "candidate.documents.0.filename", "must end in a file type Personio accepts: 3gp"),
        (with_document({"category": "cv", "filename": "README", "content_base64": "eA=="}), "candidate.documents.0.filename", "must end in a file type Personio accepts"),
        (with_document({"category": "cv", "filename": "../../etc/cv.pdf", "content_base64": "eA=="}), "candidate.documents.0.filename", "without a path"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": "not base64!"}), "candidate.documents.0.content_base64", "not valid base64"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": ""}), "candidate.documents.0.content_base64", "is empty"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": base64.b64encode(b"x" * 1025).decode()}), "candidate.documents.0.content_base64", "larger than the 1 KiB allowed inline; send larger files by url"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": "eA==" * 10_000}), "candidate.documents.0.content_base64", "larger than the 1 KiB allowed inline"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "http://files.example.com/cv.pdf"}), "candidate.documents.0.url", "must be an https URL"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "files.example.com/cv.pdf"}), "candidate.documents.0.url", "must be an https URL"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://user:pw@files.example.com/cv.pdf"}), "candidate.documents.0.url", "user name, password or port"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com:8443/cv.pdf"}), "candidate.documents.0.url", "user name, password or port"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://169.254.169.254/latest"}), "candidate.documents.0.url", "is on a host that is not an allowed document host"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com.evil.org/cv.pdf"}), "candidate.documents.0.url", "PERSONIO_SYNC_DOCUMENT_URL_HOSTS"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://cdn.example.net/cv.pdf"}), "candidate.documents.0.url", "not an allowed document host"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com/a.pdf", "content_base64": "eA=="}), "candidate.documents.0.content_base64", "exactly one of content_base64"),
        (with_document({"category": "cv", "filename": "cv.pdf"}), "candidate.documents.0.content_base64", "exactly one of content_base64"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": "eA==", "size": 1}), "candidate.documents.0.size", "not part of the contract"),
        (with_candidate(first_name="   "), "candidate.first_name", "must not be empty"),
        (with_candidate(last_name=""), "candidate.last_name", "must not be empty"),
        (with_candidate(tags=["ok", ""]), "candidate.tags.1", "must be 1–255 characters."),
        (with_candidate(gender="female"), "candidate.gender", "not part of the contract; remove it"),
        (with_candidate(documents=[{"category": "cv", "filename": f"cv{i}.pdf", "content_base64": "eA=="} for i in range(11)]), "candidate.documents", "must have at most 10 documents."),
        ({**full_request(), "callback_url": "https://x"}, "callback_url", "not part of the contract; remove it"),
        ({**full_request(), "priority": "urgent"}, "priority", "must be one of: interactive, backfill."),
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

    assert errors[0].startswith("candidate.documents.0.url: is on a host that is not an allowed document host")


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


# ------------------------------------------------------- text, ids, emails, URLs


def test_unreadable_text_is_refused_naming_the_field_without_echoing_it() -> None:
    errors = errors_of(with_candidate(last_name="Exam\ud800ple"))

    assert errors == ["candidate.last_name: contains characters that are not valid text (unpaired UTF-16 surrogate); send UTF-8 text."]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (with_candidate(first_name="A\x00lex"), "candidate.first_name"),
        (with_candidate(phone="+49\udc00"), "candidate.phone"),
        (with_candidate(message="hi \ud83d\ude00"), "candidate.message"),  # a pair as two code points
        (with_candidate(tags=["ok", "t\ud800"]), "candidate.tags.1"),
        (with_candidate(attributes={"salary_expectations": "\udfff"}), "candidate.attributes.salary_expectations"),
        (with_document({"category": "cv", "filename": "c\ud800v.pdf", "content_base64": "eA=="}), "candidate.documents.0.filename"),
        (with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com/\ud800"}), "candidate.documents.0.url"),
        ({**full_request(), "account_id": "acct\ud800"}, "account_id"),
        ({**full_request(), "project_id": "p\x00"}, "project_id"),
        ({**full_request(), "priority": "backfill\ud800"}, "priority"),
    ],
)
def test_every_string_is_checked_for_unreadable_text(request_: dict[str, Any], field: str) -> None:
    errors = errors_of(request_)

    assert f"{field}: contains characters that are not valid text" in " ".join(errors), errors
    "\n".join(errors).encode("utf-8")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({**full_request(), "x\ud800": 1}, "<key #6>"),
        (with_candidate(**{"\udc00": "x"}), "candidate.<key #11>"),
        (with_candidate(attributes={"gender": "male", "\ud800": "x"}), "candidate.attributes.<key #2>"),
        (with_document({"category": "cv", "filename": "cv.pdf", "content_base64": "eA==", "n\x00": 1}), "candidate.documents.0.<key #4>"),
        (with_candidate(extra={"deeper": [{"\ud800": 1}]}), "candidate.extra.deeper.0.<key #1>"),
    ],
)
def test_field_names_with_unreadable_text_are_named_by_position(request_: dict[str, Any], field: str) -> None:
    errors = errors_of(request_)

    assert f"{field}: is a field name that contains characters that are not valid text" in " ".join(errors), errors
    "\n".join(errors).encode("utf-8")


def test_a_request_id_with_unreadable_text_is_unusable() -> None:
    with pytest.raises(UploadRequestInvalid) as caught:
        load_upload_request({**full_request(), "request_id": "abc\ud800"}, POLICY)

    assert caught.value.request_id is None
    assert caught.value.fields == ["request_id"]


@pytest.mark.parametrize("request_id", ["r1\n", "r1\r\n", "-r1", "r 1", "r1\t", "ünï", "r\u0661"])
def test_request_id_is_matched_whole(request_id: str) -> None:
    with pytest.raises(UploadRequestInvalid) as caught:
        load_upload_request({**full_request(), "request_id": request_id}, POLICY)

    assert caught.value.request_id is None
    assert caught.value.errors[0].startswith("request_id: must be 1–128 characters")


@pytest.mark.parametrize("account_id", ["acct\n", "acct\t42", "\x7f"])
def test_account_and_project_ids_refuse_control_characters(account_id: str) -> None:
    assert errors_of({**full_request(), "account_id": account_id, "project_id": account_id}) == [
        "account_id: must not contain control characters such as line breaks or tabs.",
        "project_id: must not contain control characters such as line breaks or tabs.",
    ]


@pytest.mark.parametrize(
    "email",
    [
        "alex@example.org",
        "Alex.Example@Example.ORG",
        "alex+personio@example.org",
        "alex.b.example@mail.sub.example.co.uk",
        "o'neil@example.ie",
        "a_b-c@ex-ample.de",
        "x@a.io",
        "alex@xn--mnchen-3ya.de",
        "alex@münchen.de",
        "jörg@example.de",
        "alex@example.xn--p1ai",
        "alex@пример.рф",
        "1234567890@example.com",
        "!#$%&'*+/=?^_`{|}~-@example.org",
        "a" * 64 + "@example.org",
    ],
)
def test_plausible_emails_are_accepted(email: str) -> None:
    load_upload_request(with_candidate(email=email), POLICY)


@pytest.mark.parametrize(
    ("email", "fix"),
    [
        ("x@localhost", "needs a dot and a top-level domain"),
        ("alex@example", "needs a dot and a top-level domain"),
        ("alex@example.c", "top-level domain of letters"),
        ("alex@example.123", "top-level domain of letters"),
        ("alex@1.2.3.4", "top-level domain of letters"),
        ("alex@[192.0.2.1]", "1–63 letters, digits or inner hyphens"),
        ("alex@example.org.", "1–63 letters, digits or inner hyphens"),
        ("alex@-example.org", "1–63 letters, digits or inner hyphens"),
        ("alex@exa_mple.org", "1–63 letters, digits or inner hyphens"),
        ("alex@example..org", "1–63 letters, digits or inner hyphens"),
        ("alex@" + "a" * 64 + ".org", "1–63 letters, digits or inner hyphens"),
        ("alexexample.org", "exactly one @"),
        ("alex@@example.org", "exactly one @"),
        ("al@ex@example.org", "exactly one @"),
        ("@example.org", "must be 1–64 characters"),
        ("a" * 65 + "@example.org", "must be 1–64 characters"),
        ("alex smith@example.org", "spaces"),
        ("alex@exam\tple.org", "spaces"),
        ('"alex smith"@example.org', "spaces"),
        ("al..ex@example.org", "single dots"),
        (".alex@example.org", "single dots"),
        ("alex.@example.org", "single dots"),
        ("alex(comment)@example.org", "single dots"),
        ("alex😀@example.org", "single dots"),
        ("a@" + ("ü" * 30 + ".") * 7 + "de", "longer than 253"),  # in its punycode form
        ("a" * 60 + "@" + ("b" * 60 + ".") * 3 + "c" * 20 + ".org", "longer than 255"),
    ],
)
def test_implausible_emails_are_refused_with_the_fix(email: str, fix: str) -> None:
    errors = errors_of(with_candidate(email=email))

    [line] = errors
    assert line.startswith("candidate.email: is not a valid email address: ")
    assert fix in line
    assert email not in line


@pytest.mark.parametrize(
    "url",
    [
        "https://files.example.com:abc/cv.pdf",
        "https://files.example.com:99999/cv.pdf",
        "https://files.example.com:-1/cv.pdf",
        "https://[::1/x",
        "https://[::1]:abc/x",
        "https://[zz::1]/x",
    ],
)
def test_unparseable_document_urls_are_a_field_error(url: str) -> None:
    errors = errors_of(with_document({"category": "cv", "filename": "cv.pdf", "url": url}))

    assert errors == ["candidate.documents.0.url: is not a valid URL (check the host and port); send an https URL such as https://files.example.com/cv.pdf."]


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("https://files.example.com/a b.pdf", "spaces or control characters"),
        ("https://files.example.com/a\n.pdf", "spaces or control characters"),
        ("https://files.example.com/" + "a" * 2100, "at most 2048 characters"),
        ("https://@files.example.com/a.pdf", "user name, password or port"),
    ],
)
def test_document_urls_that_urlsplit_would_quietly_accept_are_refused(url: str, text: str) -> None:
    [line] = errors_of(with_document({"category": "cv", "filename": "cv.pdf", "url": url}))

    assert line.startswith("candidate.documents.0.url: ") and text in line


def test_port_443_is_the_https_port_and_allowed() -> None:
    load_upload_request(with_document({"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com:443/cv.pdf"}), POLICY)


@pytest.mark.parametrize("key", ["custom_attribute_\u0661\u0662", "custom_attribute_12\n", "custom_attribute_"])
def test_custom_attribute_names_are_ascii_digits_matched_whole(key: str) -> None:
    errors = errors_of(with_candidate(attributes={key: "x"}))

    assert any("is not a Personio attribute" in e for e in errors), errors


@pytest.mark.parametrize("text", ["2026-03-1\u0665", "2026-03-01\n"])
def test_dates_are_ascii_digits_matched_whole(text: str) -> None:
    errors = errors_of(with_candidate(application_date=text))

    assert errors == ["candidate.application_date: must be a date in the form YYYY-MM-DD, e.g. 2026-03-01."]


def test_messages_never_quote_the_submitted_values() -> None:
    values = {
        "application_date": "30.04.1990",
        "email": "alex(at)secret-domain.example",
        "first_name": "",
        "tags": ["", "x" * 256],
        "attributes": {"birthday": "31.12.1999", "gender": "secret-gender", "available_from": "whenever-secret"},
        "documents": [
            {"category": "secret-category", "filename": "secret-name.exe", "content_base64": "secret base64!"},
            {"category": "cv", "filename": "cv.pdf", "url": "https://secret-host.example.org/cv.pdf"},
            {"category": "cv", "filename": "cv.pdf", "url": "https://files.example.com:7777/secret-path.pdf"},
        ],
    }
    request = with_candidate(**values)
    request["priority"] = "secret-priority"

    text = "\n".join(errors_of(request))

    for secret in ("30.04.1990", "secret", "31.12.1999", "whenever", "exe", "7777", "x" * 20):
        assert secret not in text, (secret, text)


def test_the_list_of_problems_is_capped() -> None:
    request = with_candidate(**{f"unknown_{i}": i for i in range(100)})

    errors = errors_of(request)

    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1] == "request: 75 more problems are not listed; fix the ones above and send the request again."


def test_problems_are_sorted_by_position_in_lists() -> None:
    errors = errors_of(with_candidate(tags=[1] * 12))

    assert [e.split(":")[0] for e in errors][:3] == ["candidate.tags.0", "candidate.tags.1", "candidate.tags.2"]
    assert errors[-1].startswith("candidate.tags.11:")


def test_deep_nesting_is_refused_without_recursion() -> None:
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]

    errors = errors_of(with_candidate(tags=deep, extra={"k": deep}))

    assert "candidate.tags.0: must be a string." in errors
    assert "candidate.extra: is not part of the contract; remove it (see the README's message contract)." in errors


def test_the_readme_quotes_the_messages_as_the_code_words_them() -> None:
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    for request_ in (with_candidate(last_name="Ex\ud800"), with_candidate(email="x@localhost")):
        [line] = errors_of(request_)
        assert f"`{line}`" in readme, line


# ------------------------------------------------ what Personio accepts (issue 9)


@pytest.mark.parametrize(
    "value",
    ["As soon as possible", "ab sofort", "2027-01-01", "1.1.2027", "Q3 2027", "nach Absprache, spätestens 2027-03-01", "x" * 100],
)
def test_available_from_is_free_text_or_a_date(value: str) -> None:
    request = with_candidate(attributes={"available_from": value})

    loaded = load_upload_request(request, POLICY)

    assert loaded["candidate"]["attributes"]["available_from"] == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 101, "at most 100 characters"),
        ("2027-02-30", "no such day exists"),
        ("ab\nsofort", "without control characters"),
        (None, "must not be null"),
        (["2027-01-01"], "not a list"),
    ],
)
def test_available_from_refusals_name_the_field_and_the_fix(value: Any, text: str) -> None:
    request = full_request()
    request["candidate"]["attributes"]["available_from"] = value

    [line] = errors_of(request)

    assert line.startswith("candidate.attributes.available_from: ") and text in line, line


@pytest.mark.parametrize(
    ("value", "sent"),
    [(5, "5"), (-3, "-3"), (0, "0"), (65000.5, "65000.5"), (2.0, "2.0"), (True, "true"), (False, "false"), (10**30, str(10**30))],
)
def test_scalar_attribute_values_are_sent_as_text(value: Any, sent: str) -> None:
    request = with_candidate(attributes={"custom_attribute_12": value, "salary_expectations": value})

    loaded = load_upload_request(request, POLICY)

    assert loaded["candidate"]["attributes"] == {"custom_attribute_12": sent, "salary_expectations": sent}


def test_a_number_is_still_checked_as_the_attribute_it_is() -> None:
    errors = errors_of(with_candidate(attributes={"gender": 1, "birthday": 19900517, "available_from": 2027}))

    assert errors == [
        "candidate.attributes.birthday: must be a date in the form YYYY-MM-DD, e.g. 2026-03-01.",
        "candidate.attributes.gender: must be one of: male, female, diverse, undefined.",
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "must not be null; leave the attribute out instead."),
        ([1, 2], "must be text, a number or true/false, not a list"),
        ({"value": "x"}, "must be text, a number or true/false, not an object"),
        (float("nan"), "must be a finite number"),
        (float("-inf"), "must be a finite number"),
        (10**5000, "is a number too long to send"),
    ],
    ids=["null", "list", "object", "nan", "-inf", "huge"],
)
def test_values_that_are_not_one_scalar_are_refused_naming_the_attribute(value: Any, text: str) -> None:
    [line] = errors_of(with_candidate(attributes={"custom_attribute_12": value}))

    assert line.startswith("candidate.attributes.custom_attribute_12: ") and text in line, line


@pytest.mark.parametrize(
    ("phase", "loaded"),
    [
        ({"type": "system", "id": "offer"}, {"type": "system", "id": "offer"}),
        ({"type": "system", "id": "unassigned"}, {"type": "system", "id": "unassigned"}),
        ({"type": "custom", "id": 42}, {"type": "custom", "id": 42}),
        ({"type": "custom", "id": "42"}, {"type": "custom", "id": 42}),
        (None, None),
    ],
)
def test_a_request_may_name_its_personio_phase(phase: Any, loaded: Any) -> None:
    request = full_request()
    request["phase"] = phase

    assert load_upload_request(request, POLICY)["phase"] == loaded


def test_without_a_phase_or_posting_id_both_are_none() -> None:
    loaded = load_upload_request(full_request(), POLICY)

    assert loaded["phase"] is None and loaded["external_posting_id"] is None


@pytest.mark.parametrize(
    ("phase", "line"),
    [
        ("offer", 'phase: must be an object such as {"type": "system", "id": "offer"} or {"type": "custom", "id": 42}.'),
        ({"type": "stage", "id": "offer"}, "phase.type: must be one of: system, custom."),
        ({"type": "system", "id": "hired"}, "phase.id: for a system phase it must be one of: unassigned, rejected, withdrawn, offer, accepted."),
        ({"type": "custom", "id": "interview"}, "phase.id: for a custom phase it must be the phase's number from Personio (Settings → Recruiting → Phases), a whole number such as 42."),
        ({"type": "custom", "id": 0}, "phase.id: for a custom phase it must be the phase's number from Personio (Settings → Recruiting → Phases), a whole number such as 42."),
        ({"type": "system"}, "phase.id: is required but missing."),
        ({"type": "custom", "id": 42, "name": "Interview"}, "phase.name: is not part of the contract; remove it (see the README's message contract)."),
    ],
)
def test_an_invalid_phase_is_refused_naming_the_field_and_the_fix(phase: Any, line: str) -> None:
    request = full_request()
    request["phase"] = phase

    assert errors_of(request) == [line]


@pytest.mark.parametrize("value", ["gohiring-4711", "p" * 255, "Stellenbörse 12/34"])
def test_a_request_may_carry_an_external_posting_id(value: str) -> None:
    request = full_request()
    request["external_posting_id"] = value

    assert load_upload_request(request, POLICY)["external_posting_id"] == value


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("", "external_posting_id: must not be empty or only spaces."),
        ("p" * 256, "external_posting_id: must be at most 255 characters."),
        ("a\tb", "external_posting_id: must not contain control characters such as line breaks or tabs."),
        (4711, "external_posting_id: must be a string."),
    ],
)
def test_an_invalid_external_posting_id_is_refused(value: Any, line: str) -> None:
    request = full_request()
    request["external_posting_id"] = value

    assert errors_of(request) == [line]
