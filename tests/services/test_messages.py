"""services.messages: every reason a recruiter or admin can meet, in English and German."""

from __future__ import annotations

import re
import string

import pytest

from models import Health
from personio import errors
from personio.errors import DOCUMENTED_REASON_CODES
from services.messages import DOMAIN_REASONS_DE, LANGUAGES, MESSAGES, render, render_both

# The reason codes of POST /v1/recruiting/applications (docs/personio.md, "Error bodies and
# reason codes"), including the two feature codes of 403 answers.
PERSONIO_REASON_CODES = list(DOCUMENTED_REASON_CODES)

# Codes our own code stores on uploads or checks.
OWN_CODES = [
    "personio-sync.submitted",
    "personio-sync.submitted-without-channel",
    "personio-sync.already-sent",
    "personio-sync.retries-exhausted",
    "personio-sync.invalid-request",
    "personio-sync.connection-not-found",
    "personio-sync.project-not-linked",
    "personio-sync.job-not-published",
    "personio-sync.document-url-forbidden",
    "personio-sync.document-fetch-failed",
    "personio-sync.document-too-large",
    "personio-sync.held",
    "personio.unauthorized",
    "personio.rate_limited",
    "personio.server_error",
    "personio.unreachable",
    "personio.timeout",
    "personio.bad_request",
    "connect.company_id",
    "connect.access_token",
    "connect.channel_id",
    "connect.channel_unverified",
    "connect.feed_language",
    "connect.credentials_ok",
    "connect.credentials_unknown",
    "connect.feed_ok",
    "connect.feed_invalid",
]

PARAMS = {
    "field": "custom_attribute_7",
    "job_position_id": 1000001,
    "filename": "cv.pdf",
    "attempts": 8,
    "details": "candidate.email: is required but missing.",
    "detail": "HTTP 503",
    "limit": "20 MiB",
    "health": "The connection works.",
    "value": "'abc'",
    "domain": "acme.jobs.personio.de",
    "jobs": 3,
    "channel_id": 4242,
    "since": "2026-11-29 17:02 UTC",
    "count": 3,
    "cause": "Personio could not be reached",
    "phase": "custom:42",
}


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("code", PERSONIO_REASON_CODES + OWN_CODES + [f"health.{h.value}" for h in Health])
def test_code_has_english_and_german_text(code: str) -> None:
    english, german = MESSAGES[code]

    assert english.strip() and german.strip()
    assert english != german


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_placeholders_are_filled(code: str) -> None:
    messages = render_both(code, **PARAMS)

    for language in LANGUAGES:
        text = messages[language]
        assert "{" not in text and "}" not in text, text
        assert "?" not in text.replace("(?)", ""), text
        for name in placeholders(MESSAGES[code][LANGUAGES.index(language)]):
            if name in PARAMS:
                assert str(PARAMS[name]) in text


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_both_languages_use_the_same_placeholders(code: str) -> None:
    english, german = (placeholders(text) for text in MESSAGES[code])
    english = {name.removesuffix("_en") for name in english}
    german = {name.removesuffix("_de") for name in german}

    assert english == german


def test_values_reach_the_text() -> None:
    assert render("errors.attribute-validation.unknown", "en", field="custom_attribute_3") == (
        "Personio does not know the attribute 'custom_attribute_3'. Check the attribute's API name in Personio → Settings → Recruiting → Attributes."
    )
    assert "Stelle 1000001" in render("personio-sync.submitted", "de", job_position_id=1000001)
    assert "after 5 attempts" in render("personio-sync.retries-exhausted", "en", attempts=5)


def test_menu_paths_are_filled_in_by_default() -> None:
    assert "Personio → Settings → Integrations → API credentials → Recruiting API key" in render("health.invalid_credentials", "en")
    assert "Personio → Einstellungen → Integrationen → API-Zugriffsdaten" in render("health.invalid_credentials", "de")
    assert "Enable XML feed" in render("health.feed_disabled", "en", domain="x.jobs.personio.de")
    assert "Personio → Einstellungen → Recruiting → Kanäle" in render("errors.posting-validation.channel-not-found", "de")


def test_missing_value_is_shown_as_a_question_mark_not_an_error() -> None:
    assert render("errors.attribute-validation.unknown", "en").startswith("Personio does not know the attribute '?'")
    assert "'?'" in render("errors.attribute-validation.unknown", "en", field=None)


def test_unknown_code_falls_back_with_the_code() -> None:
    assert render_both("errors.something-new") == {
        "en": "Personio refused the upload (errors.something-new).",
        "de": "Personio hat den Upload abgelehnt (errors.something-new).",
    }


def test_unknown_domain_codes_use_the_generic_domain_text() -> None:
    text = render("domain.no_company", "en", value="'app.personio.de'", detail="the company name is missing")

    assert text.startswith("The domain 'app.personio.de' is not accepted: the company name is missing.")


def _domain_codes() -> set[str]:
    """Every reason code personio.domain raises (read from its source: the codes are literals there)."""
    import inspect

    import personio.domain

    return set(re.findall(r'"(domain\.[a-z_]+)"', inspect.getsource(personio.domain)))


def test_every_domain_code_has_a_german_reason() -> None:
    codes = _domain_codes()

    assert len(codes) >= 15
    for code in codes:
        assert code in MESSAGES or code in DOMAIN_REASONS_DE, f"{code}: no German reason"
    assert set(DOMAIN_REASONS_DE) <= codes, "a German reason for a code the parser no longer raises"


@pytest.mark.parametrize(
    "raw",
    ["", "app.personio.de", "file:///etc/passwd", "a b", "www.acme.jobs.personio.de", "-acme", "acme.jobs.personio.de:8080",
     "x\\y", "a%20b", "user@acme.jobs.personio.de", "acme.jobs.personio.de.", "a..b.jobs.personio.de", "xn--mnchen-3ya",
     "acme\t.jobs.personio.de", "a" * 300, "/acme", "http:acme"],
)
def test_a_refused_domain_gives_its_reason_in_either_language(raw: str) -> None:
    from personio.domain import InvalidJobsDomain, normalise_jobs_domain

    with pytest.raises(InvalidJobsDomain) as caught:
        normalise_jobs_domain(raw)
    error = caught.value
    messages = render_both(error.code, value=repr(raw)[:90], detail=error.reason)

    if error.code not in MESSAGES:
        assert error.reason in messages["en"]
        assert DOMAIN_REASONS_DE[error.code] in messages["de"]
    german_words = {w.lower() for w in re.findall(r"[A-Za-zÄÖÜäöüß]+", messages["de"].replace(repr(raw)[:90], " "))}
    assert not german_words & ENGLISH_WORDS, messages["de"]
    assert error.reason not in messages["de"]


def test_unknown_language_is_english() -> None:
    assert render("health.healthy", "fr") == "The connection works."


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.PersonioApplicantExists(400, "/p"), "errors.applicant-already-exists"),
        (errors.PersonioUnauthorized(401, "/p"), "personio.unauthorized"),
        (errors.PersonioFeatureDisabled(403, "/p"), "feature.public-api.disabled"),
        (errors.PersonioPayloadTooLarge(413, "/p"), "errors.file-too-big"),
        (errors.PersonioRateLimited(429, "/p"), "personio.rate_limited"),
        (errors.PersonioServerError(500, "/p"), "personio.server_error"),
        (errors.PersonioValidationError(400, "/p"), "personio.bad_request"),
        (errors.PersonioTransportError("x", maybe_delivered=False), "personio.unreachable"),
        (errors.PersonioTimeout("x", maybe_delivered=True), "personio.timeout"),
    ],
)
def test_every_error_class_reason_has_text(error: Exception, code: str) -> None:
    assert error.reason_code == code  # type: ignore[attr-defined]
    assert code in MESSAGES


def test_the_old_duplicate_spelling_is_shown_with_the_new_text() -> None:
    import requests

    response = requests.Response()
    response.status_code = 400
    response._content = b'{"errors": [{"field": "email", "errors": [{"reason": "errors.applicant-exists"}]}]}'
    error = errors.PersonioAPIError.from_response(response, "/v1/recruiting/applications")

    assert render_both(error.reason_code) == dict(zip(LANGUAGES, MESSAGES["errors.applicant-already-exists"], strict=True))


def _error_tree_codes() -> set[str]:
    """Every reason code the error tree can report: documented, class constants, fallbacks."""
    codes = set(DOCUMENTED_REASON_CODES) | {errors.BAD_REQUEST_CODE, errors.UNPROCESSABLE_CODE} | set(errors.LEGACY_WORDINGS.values())
    pending: list[type] = [errors.PersonioError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        constant = cls.__dict__.get("reason_code")
        if isinstance(constant, str):
            codes.add(constant)
    return codes


# Words of English that never belong in a German text (outside placeholders and menu names).
ENGLISH_WORDS = {"the", "and", "is", "not", "please", "could", "with", "of", "to", "for", "has", "cannot", "answered", "refused", "document"}


@pytest.mark.parametrize("code", sorted(_error_tree_codes() | set(MESSAGES)))
def test_every_reason_code_has_a_german_text_of_its_own(code: str) -> None:
    assert code in MESSAGES, f"{code} has no text (it would show the untranslated fallback)"
    english, german = MESSAGES[code]
    assert german.strip(), f"{code} has no German text"
    assert german != english, f"{code}: the German text is the English one"
    words = {w.lower() for w in re.findall(r"[A-Za-zÄÖÜäöüß]+", re.sub(r"\{[^}]*\}", " ", german))}
    assert not words & ENGLISH_WORDS, f"{code}: English words in the German text: {sorted(words & ENGLISH_WORDS)}"
    for language in LANGUAGES:
        text = render(code, language, **PARAMS)
        doubled = re.search(r"\b(\w+)\s+\1\b", text, flags=re.IGNORECASE)
        assert doubled is None, f"{code} ({language}): doubled word {doubled.group(0)!r} in {text!r}"


def test_feed_hint_has_no_doubled_word() -> None:
    assert "aktivieren aktivieren" not in render("health.feed_disabled", "de", domain="acme.jobs.personio.de")
