"""The Personio domain normaliser is the SSRF gate: every hostile input must be refused."""

from __future__ import annotations

import pickle
import re
import socket

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from personio.domain import (
    FEED_LANGUAGES,
    PERSONIO_JOBS_SUFFIXES,
    InvalidJobsDomain,
    feed_url,
    job_url,
    normalise_jobs_domain,
)
from personio.feed import fetch_feed

CANONICAL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.jobs\.personio\.(de|com)$")
TEMPLATE = "https://{domain}/xml"

VALID = [
    ("acme", "acme.jobs.personio.de"),
    ("ACME", "acme.jobs.personio.de"),
    ("Acme-Corp", "acme-corp.jobs.personio.de"),
    ("a", "a.jobs.personio.de"),
    ("123abc", "123abc.jobs.personio.de"),
    ("a" * 63, "a" * 63 + ".jobs.personio.de"),
    ("acme.jobs.personio.de", "acme.jobs.personio.de"),
    ("acme.jobs.personio.com", "acme.jobs.personio.com"),
    ("ACME.JOBS.PERSONIO.DE", "acme.jobs.personio.de"),
    ("https://acme.jobs.personio.com/", "acme.jobs.personio.com"),
    ("http://acme.jobs.personio.de", "acme.jobs.personio.de"),
    ("HTTPS://Acme.Jobs.Personio.De/XML", "acme.jobs.personio.de"),
    ("https://acme.jobs.personio.de/xml", "acme.jobs.personio.de"),
    ("https://acme.jobs.personio.de/xml?language=en", "acme.jobs.personio.de"),
    ("https://acme.jobs.personio.de/job/123?display=en", "acme.jobs.personio.de"),
    ("https://acme.jobs.personio.de/#apply", "acme.jobs.personio.de"),
    ("https://acme.jobs.personio.de/job/123#apply", "acme.jobs.personio.de"),
    ("https://acme.jobs.personio.de?language=de", "acme.jobs.personio.de"),
    ("acme.jobs.personio.de/", "acme.jobs.personio.de"),
    ("acme.jobs.personio.de/xml", "acme.jobs.personio.de"),
    ("acme.jobs.personio.com/job/987654", "acme.jobs.personio.com"),
    ("  acme.jobs.personio.de  ", "acme.jobs.personio.de"),
    ("\tacme\r\n", "acme.jobs.personio.de"),
    (" https://my-company-2.jobs.personio.de/ \n", "my-company-2.jobs.personio.de"),
]

HOSTILE = [
    # IP literals in every spelling a URL parser would turn into an address
    ("127.0.0.1", "domain.ip_literal"),
    ("http://127.0.0.1/xml", "domain.ip_literal"),
    ("2130706433", "domain.ip_literal"),
    ("http://2130706433/", "domain.ip_literal"),
    ("0x7f000001", "domain.ip_literal"),
    ("0x7f.0.0.1", "domain.ip_literal"),
    ("0177.0.0.1", "domain.ip_literal"),
    ("127.1", "domain.ip_literal"),
    ("169.254.169.254", "domain.ip_literal"),
    ("http://169.254.169.254/latest/meta-data/", "domain.ip_literal"),
    ("[::1]", "domain.ip_literal"),
    ("http://[::1]:8080/", "domain.ip_literal"),
    ("::ffff:127.0.0.1", "domain.ip_literal"),
    ("[fd00::1]", "domain.ip_literal"),
    ("127.0.0.1.", "domain.ip_literal"),
    # userinfo and '@' confusion
    ("user@acme.jobs.personio.de", "domain.userinfo"),
    ("https://user:pass@acme.jobs.personio.de/", "domain.userinfo"),
    ("acme.jobs.personio.de@evil.com", "domain.userinfo"),
    ("https://acme.jobs.personio.de#@evil.com", "domain.userinfo"),
    # ports, even the default one
    ("acme.jobs.personio.de:443", "domain.port"),
    ("https://acme.jobs.personio.de:443/xml", "domain.port"),
    ("acme.jobs.personio.de:8080", "domain.port"),
    ("acme.jobs.personio.de:", "domain.port"),
    ("localhost:80", "domain.port"),
    # other hosts and look-alikes
    ("acme.jobs.personio.de.evil.com", "domain.wrong_suffix"),
    ("acme.jobs.personio.de.evil.com/xml", "domain.wrong_suffix"),
    ("acmejobs.personio.de", "domain.wrong_suffix"),
    ("acme-jobs.personio.com", "domain.wrong_suffix"),
    ("acme.jobs-personio.de", "domain.wrong_suffix"),
    ("acme.jobs.personio.net", "domain.wrong_suffix"),
    ("evil.com#.jobs.personio.de", "domain.wrong_suffix"),
    ("evil.com?.jobs.personio.de", "domain.wrong_suffix"),
    ("evil.com/.jobs.personio.de", "domain.wrong_suffix"),
    ("metadata.google.internal", "domain.wrong_suffix"),
    ("acme.personio.de", "domain.hr_app_host"),
    ("https://acme.personio.com/", "domain.hr_app_host"),
    ("personio.de", "domain.no_company"),
    ("jobs.personio.de", "domain.no_company"),
    ("https://jobs.personio.com/xml", "domain.no_company"),
    ("www.personio.de", "domain.no_company"),
    # host shape
    ("acme.jobs.personio.de.", "domain.trailing_dot"),
    ("acme.", "domain.trailing_dot"),
    ("acme..jobs.personio.de", "domain.empty_label"),
    (".acme.jobs.personio.de", "domain.empty_label"),
    ("a.b.jobs.personio.de", "domain.multi_level"),
    ("www.acme.jobs.personio.de", "domain.multi_level"),
    ("-acme", "domain.invalid_label"),
    ("acme-", "domain.invalid_label"),
    ("-acme.jobs.personio.de", "domain.invalid_label"),
    ("a" * 64, "domain.invalid_label"),
    ("acme_corp", "domain.invalid_char"),
    ("acme!.jobs.personio.de", "domain.invalid_char"),
    # IDN / punycode / Unicode confusables
    ("xn--acme-9qa.jobs.personio.de", "domain.idn"),
    ("xn--80ak6aa92e", "domain.idn"),
    ("äcme.jobs.personio.de", "domain.idn"),
    ("acme\u3002jobs.personio.de", "domain.idn"),
    ("\uff41\uff43\uff4d\uff45", "domain.idn"),
    ("\u212acme", "domain.idn"),  # Kelvin sign lower-cases to ASCII "k"
    ("acme.jobs.personio.de\u00a0", "domain.idn"),
    # encodings, separators and injection
    ("acme%2ejobs.personio.de", "domain.percent_encoding"),
    ("acme.jobs.personio.de%2F%2Fevil.com", "domain.percent_encoding"),
    ("acme.jobs.personio.de\\@evil.com", "domain.backslash"),
    ("https:\\\\evil.com", "domain.backslash"),
    ("evil.com\\.jobs.personio.de", "domain.backslash"),
    ("acme\r\n.jobs.personio.de", "domain.control_char"),
    ("acme.jobs.personio.de\r\nHost: evil.com", "domain.control_char"),
    ("acme\t.jobs.personio.de", "domain.control_char"),
    ("acme\x00.jobs.personio.de", "domain.control_char"),
    ("acme\x7f", "domain.control_char"),
    ("ac me", "domain.whitespace"),
    # schemes
    ("ftp://acme.jobs.personio.de", "domain.scheme"),
    ("file:///etc/passwd", "domain.scheme"),
    ("javascript:alert(1)", "domain.scheme"),
    ("gopher://acme.jobs.personio.de:70/", "domain.scheme"),
    ("//evil.com", "domain.scheme"),
    ("//acme.jobs.personio.de", "domain.scheme"),
    ("http:acme.jobs.personio.de", "domain.scheme"),
    ("https:/acme.jobs.personio.de", "domain.scheme"),
    # empty and over-long
    ("", "domain.empty"),
    ("   ", "domain.empty"),
    ("https://", "domain.empty"),
    ("a" * 254, "domain.too_long"),
    ("https://acme.jobs.personio.de/" + "x" * 300, "domain.too_long"),
]


def test_the_hostile_corpus_is_big_enough() -> None:
    assert len(HOSTILE) >= 40
    assert len({raw for raw, _ in HOSTILE}) == len(HOSTILE), "duplicate hostile inputs"


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_accepts_what_admins_paste(raw: str, expected: str) -> None:
    assert normalise_jobs_domain(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_normalised_form_is_a_fixed_point(raw: str, expected: str) -> None:
    assert normalise_jobs_domain(normalise_jobs_domain(raw)) == expected


@pytest.mark.parametrize(("raw", "code"), HOSTILE)
def test_refuses_hostile_input_with_a_specific_code(raw: str, code: str) -> None:
    with pytest.raises(InvalidJobsDomain) as caught:
        normalise_jobs_domain(raw)
    error = caught.value
    assert error.code == code
    assert error.raw == raw
    message = str(error)
    # One English line that names the field and says what to do instead.
    assert "\n" not in message and "\r" not in message and "\x00" not in message
    assert message.startswith("domain ")
    assert "jobs.personio" in message


@pytest.mark.parametrize(("raw", "code"), HOSTILE)
def test_hostile_input_never_reaches_http(raw: str, code: str) -> None:
    # No URL is registered, so any request at all would fail the test loudly.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        with requests.Session() as session:
            with pytest.raises(InvalidJobsDomain):
                fetch_feed(session, feed_url(TEMPLATE, normalise_jobs_domain(raw), "en"))
            # Nor can the raw value be smuggled straight into the template.
            with pytest.raises(InvalidJobsDomain) as caught:
                fetch_feed(session, feed_url(TEMPLATE, raw, None))
            assert caught.value.code == "domain.not_normalised"
        assert len(rsps.calls) == 0


def test_hr_app_host_message_points_to_the_jobs_host() -> None:
    with pytest.raises(InvalidJobsDomain) as caught:
        normalise_jobs_domain("https://acme.personio.de/")
    assert "acme.jobs.personio.de" in str(caught.value)
    assert "HR app" in str(caught.value)


def test_missing_dot_before_jobs_suggests_the_fix() -> None:
    with pytest.raises(InvalidJobsDomain) as caught:
        normalise_jobs_domain("acmejobs.personio.de")
    assert "did you mean acme.jobs.personio.de?" in str(caught.value)


def test_hostile_message_is_one_line_and_bounded() -> None:
    raw = "x\r\n" * 60
    with pytest.raises(InvalidJobsDomain) as caught:
        normalise_jobs_domain(raw)
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) < 400


def test_non_text_input_is_refused() -> None:
    with pytest.raises(InvalidJobsDomain) as caught:
        normalise_jobs_domain(None)  # type: ignore[arg-type]
    assert caught.value.code == "domain.type"


def test_is_a_value_error_for_generic_handlers() -> None:
    assert issubclass(InvalidJobsDomain, ValueError)


def test_error_survives_pickling() -> None:
    with pytest.raises(InvalidJobsDomain) as caught:
        normalise_jobs_domain("acme.jobs.personio.de:443")
    clone = pickle.loads(pickle.dumps(caught.value))
    assert (clone.code, clone.raw, str(clone)) == (
        "domain.port", "acme.jobs.personio.de:443", str(caught.value)
    )


def test_never_touches_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("normalise_jobs_domain must not resolve names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket, "gethostbyname", no_dns)
    monkeypatch.setattr(socket, "create_connection", no_dns)
    for raw, expected in VALID:
        assert normalise_jobs_domain(raw) == expected
    for raw, _code in HOSTILE:
        with pytest.raises(InvalidJobsDomain):
            normalise_jobs_domain(raw)


# --- property -------------------------------------------------------------

_TOKENS = st.sampled_from(
    [
        "acme", "ACME", "a", "-", ".", "..", "jobs", "personio", "de", "com", ".jobs.personio.de",
        ".jobs.personio.com", "personio.de", "http://", "https://", "//", "/", ":", ":443", "@",
        "#", "?", "%2e", "\\", " ", "\t", "\n", "\x00", "xn--", "127.0.0.1", "0x7f", "[::1]",
        "www.", "evil.com", "é", "\u3002", "1", "0",
    ]
)


def _assert_safe(raw: str) -> None:
    try:
        host = normalise_jobs_domain(raw)
    except InvalidJobsDomain as error:
        assert error.code.startswith("domain.")
        assert "\n" not in str(error)
        return
    assert CANONICAL.fullmatch(host), host
    assert host.endswith(PERSONIO_JOBS_SUFFIXES)
    assert normalise_jobs_domain(host) == host


@settings(max_examples=400, deadline=None, database=None)
@given(st.text(max_size=300))
def test_property_arbitrary_text_is_refused_or_canonical(raw: str) -> None:
    _assert_safe(raw)


@settings(max_examples=600, deadline=None, database=None)
@given(st.lists(_TOKENS, max_size=12).map("".join))
def test_property_url_shaped_text_is_refused_or_canonical(raw: str) -> None:
    _assert_safe(raw)


# --- URL builders ---------------------------------------------------------


def test_feed_url_from_template() -> None:
    assert feed_url(TEMPLATE, "acme.jobs.personio.de", None) == "https://acme.jobs.personio.de/xml"


@pytest.mark.parametrize("language", sorted(FEED_LANGUAGES))
def test_feed_url_appends_supported_language(language: str) -> None:
    assert (
        feed_url(TEMPLATE, "acme.jobs.personio.com", language)
        == f"https://acme.jobs.personio.com/xml?language={language}"
    )


def test_feed_url_with_a_local_stand_in_template() -> None:
    url = feed_url("http://127.0.0.1:8765/feeds/{domain}/xml", "acme.jobs.personio.de", "de")
    assert url == "http://127.0.0.1:8765/feeds/acme.jobs.personio.de/xml?language=de"


def test_feed_url_keeps_an_existing_query() -> None:
    url = feed_url("https://{domain}/xml?x=1", "acme.jobs.personio.de", "en")
    assert url == "https://acme.jobs.personio.de/xml?x=1&language=en"


@pytest.mark.parametrize("language", ["EN", "english", "de&x=1", "en#", "", "pl", "de-DE"])
def test_feed_url_rejects_unsupported_language(language: str) -> None:
    with pytest.raises(ValueError, match="language"):
        feed_url(TEMPLATE, "acme.jobs.personio.de", language)


@pytest.mark.parametrize(
    "template", ["https://acme.jobs.personio.de/xml", "https://{domain}/{domain}"]
)
def test_feed_url_template_needs_exactly_one_placeholder(template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        feed_url(template, "acme.jobs.personio.de", None)


@pytest.mark.parametrize(
    "domain", ["acme", "ACME.jobs.personio.de", "acme.jobs.personio.de:443", "evil.com", ""]
)
def test_url_builders_require_a_normalised_domain(domain: str) -> None:
    with pytest.raises(InvalidJobsDomain) as caught:
        feed_url(TEMPLATE, domain, None)
    assert caught.value.code == "domain.not_normalised"
    with pytest.raises(InvalidJobsDomain):
        job_url(domain, 1)


def test_job_url() -> None:
    url = job_url("acme.jobs.personio.com", 1234567)
    assert url == "https://acme.jobs.personio.com/job/1234567"


@pytest.mark.parametrize("job_id", [0, -1, True, 1.5, "12"])
def test_job_url_rejects_bad_ids(job_id: object) -> None:
    with pytest.raises(ValueError, match="job id"):
        job_url("acme.jobs.personio.de", job_id)  # type: ignore[arg-type]
